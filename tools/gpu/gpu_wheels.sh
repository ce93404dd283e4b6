#!/usr/bin/env bash
# Prepare .whl/ for an end-to-end run on a lent GPU machine (Python 3.12 there, torch and onnxruntime
# installed, no internet, 64 MiB carried per call): PyAV, protobuf 4.25 and mediapipe 0.10.21
# with the models of other solutions (pose, hands, iris, ...) left out so everything fits.
# Run here (it downloads from PyPI), add `/.whl/` to .git/info/exclude, then carry `.whl` in the call;
# tools/gpu/bench_gpu.sh unpacks it and adds the end-to-end 1080p benchmark.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$tmp" mediapipe==0.10.21 av==14.2.0 protobuf==4.25.8
mkdir -p .whl
python3 - "$tmp" <<'PY'
import glob, os, shutil, sys, zipfile
tmp = sys.argv[1]
drop = ("pose_landmark", "pose_detection", "hand_landmark", "palm_detection", "iris_landmark",
        "holistic_landmark", "selfie_segmentation", "objectron", "face_landmark_with_attention")
for whl in glob.glob(os.path.join(tmp, "*")):
    name = os.path.basename(whl).split("-")[0].lower()
    out = os.path.join(".whl", f"{name}.zip")
    if name != "mediapipe":
        shutil.copy(whl, out)
        continue
    with zipfile.ZipFile(whl) as zi, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zo:
        for i in zi.infolist():
            if not (i.filename.endswith(".tflite") and any(d in i.filename for d in drop)):
                zo.writestr(i, zi.read(i.filename))
PY
du -sh .whl
