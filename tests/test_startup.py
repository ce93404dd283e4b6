"""What a run pays before its first frame, and the colour match every rendered face goes through."""
import os
import subprocess
import sys

import cv2
import numpy as np

from ideud.stream.blend import match_colour


def test_default_restorer_without_gan_weights_does_not_load_torch(tmp_path):
    # torch takes ~1.3 s to import: with no GAN weights installed there is nothing for it to run
    code = ("import sys\n"
            "from ideud.stream.restore import auto_restorer\n"
            "msgs = []\n"
            "r = auto_restorer(msgs.append)\n"
            "print(type(r).__name__, 'torch' in sys.modules, msgs[-1])\n")
    env = dict(os.environ, IDEUD_MODELS_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    name, torch_loaded, msg = out.stdout.split(" ", 2)
    assert name == "PriorRestorer"
    assert torch_loaded == "False"
    assert "GAN weights are not installed" in msg


def test_match_colour_matches_mean_and_spread_inside_the_mask():
    rng = np.random.default_rng(3)
    h, w = 150, 130
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (65, 75), (45, 60), 0, 0, 360, 1.0, -1)
    inside = mask > 0.5
    image = np.clip(rng.normal((120, 100, 90), (20, 15, 12), (h, w, 3)), 0, 255).astype(np.uint8)
    reference = np.clip(rng.normal((140, 95, 80), (25, 18, 14), (h, w, 3)), 0, 255).astype(np.uint8)
    out = match_colour(image, reference, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    got, want = out[inside].astype(np.float64), reference[inside].astype(np.float64)
    assert np.all(np.abs(got.mean(0) - want.mean(0)) < 1.0)
    assert np.all(np.abs(got.std(0) - want.std(0)) < 1.0)
    # a mask with almost nothing in it leaves the image as it is
    tiny = np.zeros_like(mask)
    tiny[0, :5] = 1.0
    assert match_colour(image, reference, tiny) is image


def test_face_mesh_loads_mediapipe_without_matplotlib_or_sounddevice_and_they_still_work():
    code = ("import sys, types\n"
            "from ideud.models.facemesh import FaceMesh\n"
            "m = FaceMesh()\n"
            "before = any(n in sys.modules for n in ('matplotlib', 'matplotlib.pyplot', 'sounddevice'))\n"
            "import matplotlib.pyplot as plt\n"
            "import matplotlib\n"
            "from mediapipe.python.solutions import drawing_utils\n"
            "print(before, type(plt) is types.ModuleType, callable(plt.figure), callable(drawing_utils.plt.plot),\n"
            "      type(matplotlib) is types.ModuleType and matplotlib.pyplot is plt)\n"
            "m.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True", "True", "True"]
