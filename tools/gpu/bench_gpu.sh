#!/usr/bin/env bash
# One prepared GPU check (a lent H100/H200 has torch and onnxruntime, not our other dependencies):
# the CUDA tests of the GAN tier, then bench_gan (engines x batch sizes, host and device input, the
# restorer stage), with .whl/ present (tools/gpu/gpu_wheels.sh, carried) the end-to-end 1080p 4-face
# benchmark, and compiled engines last because they take a minute each to build.
# Results land in $OUT (default ./gpu_out); the whole script stays under ~9 minutes.
#   bash tools/gpu/bench_gpu.sh
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1  # one log: at most 8 files come back from a device run
export PYTHONUNBUFFERED=1
# The repository's top-level folders as the `ideud` namespace, without installing anything.
site=$(mktemp -d)
mkdir -p "$site/ideud"
for d in stream engines models tools eval; do ln -s "$PWD/$d" "$site/ideud/$d"; done
if compgen -G ".whl/*.zip" > /dev/null; then  # PyAV, mediapipe, ...: unpacked, not installed
    for z in .whl/*.zip; do "${PYTHON:-python3}" -m zipfile -e "$z" "$site"; done
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
# BENCH_EXTRA, e.g. "--narrow 0.0625 --iters 1", makes a quick dry run on a CPU machine
bench() { timeout "$1" "$PY" tools/bench/bench_gan.py "${@:2}" ${BENCH_EXTRA:-}; echo "bench_gan exit $?"; }

{ nvidia-smi -L; "$PY" -c 'import sys, torch, numpy, onnxruntime as o
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "numpy", numpy.__version__,
      "onnxruntime", o.__version__, o.get_available_providers())'; }

timeout 150 "$PY" -m pytest -q -rs -p no:cacheprovider --noconftest tests/test_engines.py tests/test_gfpgan.py \
    tests/test_restore_gan.py tests/test_face_align.py tests/test_bisenet.py

bench 100 --grid "torch-eager:1,8 torch-shared:1,8,32 torch-shared-cl:8,32,64 torch-cudagraphs:1,8,32 \
    torch-cudagraphs@bf16:32 onnxruntime:1 tensorrt:1" --json "$OUT/bench_gan.json"
bench 60 --gpu-input --grid "torch-cudagraphs:8,32 torch-shared-cl:64" --json "$OUT/bench_gan_gpu_input.json"
bench 60 --stage torch-cudagraphs --stage-batches 4,16 --json "$OUT/bench_stage.json"
if "$PY" -c "import av, mediapipe" 2>/dev/null; then
    for ra in 0 2; do  # the GAN on the main thread, then on its own thread (--restore-ahead)
        timeout 90 "$PY" tools/bench/bench.py --out /tmp/ideud-bench --frames 96 --clips 1080p_4faces \
            --restorer gan-random --privacy off --restore-ahead $ra --json "$OUT/e2e_gan_ahead$ra.json"
    done
    timeout 45 "$PY" tools/bench/bench.py --out /tmp/ideud-bench --frames 96 --clips 1080p_4faces \
        --restorer classic --privacy off --json "$OUT/e2e_classic.json"
fi
bench "${COMPILE_BUDGET:-200}" --deadline "$(( ${COMPILE_BUDGET:-200} - 60 ))" \
    --grid "torch-compiled-cl:32,8 torch-compiled-cudagraphs:8" --json "$OUT/bench_compiled.json"
