"""A track that ended leaves nothing in the restorer: the prior restorer's new face for it (a
canvas per candidate the guard tried, ~5 MB a searched track) and its picks go with the track, in
this process and in a restore process. A camera stream meets tracks without end; before, a live
run's memory grew by every track it had ever seen."""
from __future__ import annotations

import pytest

from clips import write_clip
from footage import two_scenes
from ideud.stream.pipeline import FaceProcessor, Options, deidentify


@pytest.mark.parametrize("processes", [0, 1])
def test_a_track_cut_off_by_a_scene_change_is_forgotten_by_the_restorer(tmp_path, processes):
    clip = write_clip(str(tmp_path / "cut.mp4"), [f.rgb for f in two_scenes(8, 8)], audio=False)
    o = Options(codec="ffv1", seed=4, audio=False, restore_processes=processes)
    proc = FaceProcessor(o)
    try:
        rep = deidentify(clip, str(tmp_path / "out.mkv"), o, processor=proc)
        if proc.worker is not None:
            proc.worker.warmup()  # returns once every task queued before it (the forget) has run
        first = [t["id"] for t in rep["tracks"] if t["first_frame"] < 8]
        second = [t["id"] for t in rep["tracks"] if t["first_frame"] >= 8]
        assert rep["scene_cuts"] == 1 and first and second
        # (asked of a restore process, the question carries the ended tracks' drops along)
        assert all(proc.restorer.picks_of(tid) == {} for tid in first)
        assert all(proc.restorer.picks_of(tid) != {} for tid in second)  # still on screen at the end
    finally:
        proc.close()
