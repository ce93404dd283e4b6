"""The warm-up a live stream runs before it connects (stream/warmup.py): every model of the face
path loaded and run once, on the shipped portrait, and nothing of it left behind: the same video
and the same report numbers as without it, and no warm-up track in the restorer."""
from __future__ import annotations

import numpy as np
import pytest

from clips import moving_faces, read_frames, write_clip
from ideud.stream.pipeline import FaceProcessor, Options, deidentify
from ideud.stream.warmup import WARMUP_TRACK, warm_up


@pytest.fixture(scope="module")
def clip(clip_dir):
    return write_clip(str(clip_dir / "warmup_faces.mp4"), moving_faces(6, 480, 270, size=150, faces=2), audio=False)


@pytest.mark.parametrize("processes", [0, 1])
def test_a_warmed_up_processor_gives_the_same_video_and_report(clip, tmp_path, processes):
    o = Options(codec="ffv1", seed=5, audio=False, restore_processes=processes)
    videos, reports = [], []
    for warm in (False, True):
        proc = FaceProcessor(o)
        try:
            if warm:
                warm_up(proc)
                # what loads lazily is loaded now: the verifier's confirmers, EdgeFace's session
                assert {"mesh", "blaze_full", "hog", "cnn"} <= set(proc.detector.confirmers._built)
                assert proc.guard.two.edge._session is not None
                assert proc.guard.two.dlib_chips == proc.guard.two.edge_chips == 0
                assert proc.detector.dropped == 0 and proc.detector.confirmed == []
            out = tmp_path / f"warm{int(warm)}.mkv"
            reports.append(deidentify(clip, str(out), o, processor=proc))
            if proc.worker is not None:
                proc.worker.warmup()  # every task queued before it has run
            # the warm-up track was forgotten (in a restore process: with the call that asks)
            assert proc.restorer.picks_of(WARMUP_TRACK) == {}
        finally:
            proc.close()
        videos.append(read_frames(out))
    assert reports[0]["face_frames"] == 12 and reports[0]["fallback_face_frames"] < 12
    for key in ("face_frames", "fallback_face_frames", "privacy", "tracks"):
        assert _untimed(reports[0][key]) == _untimed(reports[1][key])
    # (how the worker's calls group the faces follows timing; how many faces it restored does not)
    assert reports[0]["restore_worker"]["faces"] == reports[1]["restore_worker"]["faces"]
    assert len(videos[0]) == len(videos[1]) == 6
    for a, b in zip(videos[0], videos[1]):
        assert np.array_equal(a, b)


def _untimed(x):
    """A report part without its timings (they differ between any two runs)."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x
