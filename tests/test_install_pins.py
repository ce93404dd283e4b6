"""The install pins (issue 16.9): what pyproject.toml pins, and the CI check on pip's log that a fresh
install took one wheel of each (.ci/run runs it on the real log of a fresh venv)."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / ".ci" / "one_wheel_each.py"


def test_opencv_and_jax_are_pinned_to_what_numpy_lt_2_resolves():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "numpy<2" in deps
    assert "opencv-contrib-python==4.11.0.86" in deps
    assert not [d for d in deps if d.startswith(("opencv-python", "opencv-python-headless"))]  # one cv2 only
    assert {"jax==0.7.1", "jaxlib==0.7.1"} <= set(deps)


def test_installed_opencv_is_the_pinned_one():
    import cv2

    assert cv2.__version__ == "4.11.0"


# lines as pip writes them to --log (a backtracking install, then a cached and a local wheel)
BACKTRACKED = """\
2026-12-01T15:10:01,100   Downloading opencv_contrib_python-5.1.0.95-cp37-abi3-manylinux_2_28_x86_64.whl (89.0 MB)
2026-12-01T15:10:02,100   Downloading opencv_contrib_python-5.1.0.95-cp37-abi3-manylinux_2_28_x86_64.whl.metadata (20 kB)
2026-12-01T15:10:09,100   Downloading https://files.pythonhosted.org/packages/aa/opencv_contrib_python-4.11.0.86-cp37-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (69.1 MB)
2026-12-01T15:10:10,100   Using cached jax-0.7.1-py3-none-any.whl (2.8 MB)
2026-12-01T15:10:11,100 Processing /opt/wheels/jaxlib-0.7.1-cp311-cp311-manylinux_2_27_x86_64.whl
"""


def run_check(tmp_path, text, *names):
    log = tmp_path / "pip.log"
    log.write_text(text)
    return subprocess.run([sys.executable, str(CHECK), str(log), *names], capture_output=True, text=True, timeout=60)


def test_check_fails_on_two_opencv_wheels(tmp_path):
    p = run_check(tmp_path, BACKTRACKED, "opencv", "jax", "jaxlib")
    assert p.returncode == 1, p.stdout
    assert "FAIL: opencv: 2 wheel(s)" in p.stdout
    assert "ok: jax: 1 wheel(s) jax-0.7.1" in p.stdout and "ok: jaxlib: 1 wheel(s) jaxlib-0.7.1" in p.stdout


def test_check_passes_on_one_wheel_each(tmp_path):
    one = "\n".join(ln for ln in BACKTRACKED.splitlines() if "5.1.0.95" not in ln)
    p = run_check(tmp_path, one, "opencv", "jax", "jaxlib")
    assert p.returncode == 0, p.stdout
