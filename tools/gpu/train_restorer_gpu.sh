#!/usr/bin/env bash
# One prepared training run of the learned Step II on a lent GPU machine (torch, onnxruntime and
# OpenCV are there; mediapipe and the portraits are not, so the pairs are made here and carried).
# Here, once:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu
#   python tools/build/restorer_pairs.py --out .gpu/pairs.npz          # 49 MB, compressed
#   cp ../shared/models/edgeface/edgeface_xs_q.pt .gpu/                  # the identity loss's network
#   cp RUN/last.pt .gpu/last.pt                                         # optional: continue a run
# Then run `bash tools/gpu/train_restorer_gpu.sh` with `.gpu` carried. What comes back in $OUT
# (at most 8 files): last.pt (continue from it with any machine), losses.jsonl, the last sample
# grid, restorer_learned.onnx (checked against torch) and log.txt.
#   MINUTES (default 8), BATCH (32), THREADS (8), DEVICE (cuda; cpu makes a dry run here)
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
site=$(mktemp -d)  # the repository's top-level folders as the `ideud` namespace, nothing installed
mkdir -p "$site/ideud"
for d in stream engines models tools eval; do ln -s "$PWD/$d" "$site/ideud/$d"; done
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
run=$(mktemp -d)
[ -f .gpu/last.pt ] && cp .gpu/last.pt "$run/last.pt"
"$PY" tools/build/train_restorer.py --pairs .gpu/pairs.npz --edgeface .gpu/edgeface_xs_q.pt --run "$run" \
    --device "${DEVICE:-cuda}" --batch "${BATCH:-32}" --threads "${THREADS:-8}" --minutes "${MINUTES:-8}" \
    --log-every 50 --sample-every 500 --export "$OUT/restorer_learned.onnx"
echo "train_restorer exit $?"
cp "$run/last.pt" "$run/losses.jsonl" "$OUT/" 2>/dev/null
last=$(ls "$run"/sample_*.png 2>/dev/null | tail -1)
[ -n "$last" ] && cp "$last" "$OUT/"
ls -la "$OUT"
