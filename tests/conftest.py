import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):  # as the CLI does
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from clips import moving_faces, write_clip  # noqa: E402

IDENTIFYING_TAGS = {"location": "+48.8584+002.2945/", "com.apple.quicktime.make": "Apple",
                    "com.apple.quicktime.model": "iPhone 15", "creation_time": "2026-01-02T03:04:05.000000Z",
                    "artist": "Jane Doe", "title": "holiday"}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def face_clip(clip_dir) -> Path:
    """30 frames, 480x270 @25 fps, one moving face, AAC audio, identifying metadata."""
    return Path(write_clip(clip_dir / "face.mp4", moving_faces(30, 480, 270, size=200), metadata=IDENTIFYING_TAGS))


@pytest.fixture(scope="module")
def detectors():
    """CenterFace bare and behind the false-face verifier (stream/verify.py)."""
    from ideud.stream.detect import make_detector
    from ideud.stream.verify import VerifyingDetector

    bare = make_detector("centerface", verify=False)
    return bare, VerifyingDetector(bare)
