"""Step II in processes of its own (stream/restore_processes.py): the same video bit for bit as
the restorer in this process, one track always in one process, fail closed when a process is lost,
and no `if __name__ == "__main__":` needed in a caller's script."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from clips import moving_faces, read_frames, write_clip
from ideud.stream.pipeline import FaceProcessor, Options, deidentify
from ideud.stream import restore_processes as rp_module
from ideud.stream.restore import make_restorer
from ideud.stream.restore_processes import RestoreProcesses, RestoreProcessLost, auto_count
from ideud.stream.types import RestoreItem


@pytest.fixture(scope="module")
def two_face_clip(clip_dir):
    return write_clip(str(clip_dir / "two_faces_rp.mp4"), moving_faces(10, 640, 360, size=170, faces=2), audio=False)


def test_the_default_path_gives_the_same_video_in_restore_processes(two_face_clip, tmp_path):
    # default settings (privacy guard on, prior restorer): the guard's candidates go through the
    # processes too; two processes split the two tracks
    videos, reports = {}, {}
    for n in (0, 2):
        out = tmp_path / f"rp{n}.mkv"
        o = Options(codec="ffv1", seed=3, audio=False, restore_processes=n)
        reports[n] = deidentify(two_face_clip, str(out), o)
        videos[n] = read_frames(out)
    assert reports[0]["restore_processes"] == 0 and reports[2]["restore_processes"] == 2
    assert reports[2]["face_frames"] == 20 and len({t["id"] for t in reports[2]["tracks"]}) == 2
    assert reports[2]["fallback_face_frames"] < reports[2]["face_frames"]  # faces were restored, not all hidden
    assert len(videos[0]) == len(videos[2]) == 10
    for a, b in zip(videos[0], videos[2]):
        assert np.array_equal(a, b)
    # the report says what each process spent on the CPU (asked before they stop): which one bounds the run
    assert reports[0]["cpu_s"]["restore_processes"] == [] and reports[0]["cpu_s"]["this_process"] > 0
    per_process = reports[2]["cpu_s"]["restore_processes"]
    assert len(per_process) == 2 and all(c > 0 for c in per_process)


def test_a_track_stays_in_one_process_and_keeps_its_picks():
    local = make_restorer("prior", sigma=0.25)
    rp = RestoreProcesses(local, 2, sigma=0.25)
    try:
        img = np.full((64, 64, 3), 128, np.uint8)
        assert rp.picks_of(7) == {}
        rp.preset_picks(7, {"11:0": 5})
        assert rp.picks_of(7) == {"11:0": 5}
        assert rp.picks_of(8) == {}  # the other process never saw track 7
        rp.forget(7)
        assert rp.picks_of(7) == {}
        # an item the restorer declines (no face: too small) comes back as it went
        it = RestoreItem(image=img, original=img, mask=np.ones((64, 64), np.float32),
                         landmarks=np.zeros((468, 2)), track_id=3, seed=1)
        assert np.array_equal(rp.restore([it])[0], img)
    finally:
        rp.close()


def test_a_lost_restore_process_hides_the_faces(face_clip, tmp_path):
    proc = FaceProcessor(Options(codec="ffv1", seed=2, audio=False, privacy="off", restore_processes=1))
    child = []

    def kill_after_the_first_frames(done, total):
        if done == 3:  # as the out-of-memory killer would, mid-run
            child.append(proc.restorer._procs[0])
            child[0].kill()
            child[0].wait()
    try:
        rep = deidentify(str(face_clip), str(tmp_path / "lost.mkv"), Options(codec="ffv1", audio=False, privacy="off"),
                         processor=proc, on_frame=kill_after_the_first_frames)
    finally:
        proc.close()
    assert child and rep["face_frames"] == 30
    reasons = {k: v for t in rep["tracks"] for k, v in t["fallback_reasons"].items()}
    # the frames restored before the loss are rendered; every face after it is hidden (fail closed)
    assert set(reasons) == {"error:RestoreProcessLost"} and 20 <= reasons["error:RestoreProcessLost"] <= 27
    assert rep["restore_processes"] == 1 and rep["cpu_s"]["restore_processes"] == []  # lost: nothing to ask
    with pytest.raises(RestoreProcessLost):
        proc.restorer.warmup()


def test_no_main_guard_is_needed(face_clip, tmp_path):
    # a library caller's plain script: "spawn" would run it again in every child
    script = tmp_path / "plain.py"
    script.write_text("from ideud.stream.pipeline import Options, deidentify\n"
                      f"rep = deidentify({str(face_clip)!r}, {str(tmp_path / 'plain.mkv')!r}, "
                      "Options(codec='ffv1', audio=False, privacy='off', restore_processes=1))\n"
                      "print('restore_processes', rep['restore_processes'], rep['face_frames'])\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("restore_processes 1 30") == 1


def test_a_process_that_cannot_start_leaves_the_restorer_in_this_process(face_clip, tmp_path):
    # a restorer the processes cannot build (here: a name only this process knows) is noticed
    # before the first face: the run goes on in this process, the same video as restore_processes=0
    local = make_restorer("prior", sigma=0.25)
    local.name = "prior-only-here"
    rp = RestoreProcesses(local, 1, sigma=0.25)
    try:
        img = np.full((64, 64, 3), 128, np.uint8)
        it = RestoreItem(image=img, original=img, mask=np.ones((64, 64), np.float32),
                         landmarks=np.zeros((468, 2)), track_id=3, seed=1)
        assert np.array_equal(rp.restore([it])[0], img)
        assert rp.in_process and rp.processes == 0
        rp.preset_picks(3, {"1:0": 2})
        assert rp.picks_of(3) == {"1:0": 2} == local.picks_of(3)
    finally:
        rp.close()


def test_a_render_request_that_fails_fails_only_its_own_face():
    # one call, three entries: a face rendered + restored there, a broken request, a plain item
    from clips import portrait
    from portrait_faces import portrait_landmarks
    from ideud.models import facemesh as fm
    from ideud.stream.detect import make_detector
    from ideud.stream.face_work import run_entries, warp_here
    from ideud.stream.occlusion import OcclusionStage
    from ideud.stream.render import crop_for
    from ideud.stream.types import RenderAnswer, RenderRequest

    img = portrait(240)
    mesh = fm.FaceMesh()
    try:
        lm = portrait_landmarks(img, make_detector("centerface"), mesh)
    finally:
        mesh.close()
    assert lm is not None
    target = lm[:, :2] + [1.5, -1.0]
    crop = crop_for(lm, target, img.shape[1], img.shape[0])
    good = RenderRequest(original=np.ascontiguousarray(img[crop.y0:crop.y1, crop.x0:crop.x1]), crop=crop,
                         landmarks=lm, target=target, visible=np.ones(len(lm), bool), measured=lm, track_id=1, seed=4)
    broken = RenderRequest(original=good.original, crop=crop, landmarks=lm[:10], target=target[:10],
                           visible=np.ones(10, bool), measured=None, track_id=2, seed=4)
    plain = RestoreItem(image=good.original, original=good.original, mask=np.zeros(good.original.shape[:2], np.float32),
                        landmarks=np.zeros((468, 2)), track_id=3, seed=1)
    here = run_entries([good, broken, plain], make_restorer("prior", sigma=0.25), OcclusionStage())
    assert isinstance(here[0], RenderAnswer) and here[0].reason is None
    assert here[0].face.shape == good.original.shape and here[0].mask.max() > 0.5
    assert isinstance(here[1], RenderAnswer) and here[1].reason.startswith("error:") and here[1].face is None
    assert np.array_equal(here[2], good.original)  # too small a face for the prior: handed back
    rp = RestoreProcesses(make_restorer("prior", sigma=0.25), 2, sigma=0.25)
    try:  # the same answers from the tracks' processes, bit for bit
        there = rp.restore([good, broken, plain])
    finally:
        rp.close()
    assert np.array_equal(there[0].face, here[0].face) and np.array_equal(there[0].mask, here[0].mask)
    assert there[1].reason == here[1].reason and np.array_equal(there[2], here[2])
    # the pipeline warps a request here before it sends it (face_work.warp_here): the same answer
    warped = run_entries([warp_here(dataclasses.replace(good))], make_restorer("prior", sigma=0.25),
                         OcclusionStage())[0]
    assert warped.reason is None and np.array_equal(warped.face, here[0].face)
    assert np.array_equal(warped.image, here[0].image) and np.array_equal(warped.mask, here[0].mask)


def test_auto_count_leaves_gpu_restorers_and_one_core_alone():
    class Gpu:
        on_gpu = True

    class Light:
        on_gpu = False

    class Cpu:
        on_gpu, cpu_heavy = False, True

    assert auto_count(Gpu(), cores=16) == 0
    assert auto_count(Light(), cores=16) == 0
    assert auto_count(make_restorer("classic"), cores=16) == 0
    assert auto_count(make_restorer("prior"), cores=16) == 4
    assert auto_count(Cpu(), cores=1) == 0
    assert auto_count(Cpu(), cores=2) == 1
    assert auto_count(Cpu(), cores=16) == 4


def test_processes_started_early_are_taken_by_the_run(face_clip, tmp_path, monkeypatch):
    # the CLI starts them before its own imports (restore_processes.start_early); the processor built
    # from the same options takes those very processes and starts none of its own
    started = []
    start = rp_module._start
    monkeypatch.setattr(rp_module, "_start", lambda spec: started.append(start(spec)) or started[-1])
    o = Options(codec="ffv1", seed=3, audio=False, restore_processes=1, restorer="prior")
    rp_module.start_early(o)
    assert len(started) == 1 and started[0][1].poll() is None
    rp_module.start_early(o)  # asked twice: still one
    assert len(started) == 1
    proc = FaceProcessor(o)
    try:
        assert proc.restorer._procs == [started[0][1]] and not rp_module._EARLY.get(rp_module._spec("prior", {"sigma": o.scale}))
        rep = deidentify(str(face_clip), str(tmp_path / "early.mkv"), o, processor=proc)
    finally:
        proc.close()
    assert len(started) == 1 and rep["restore_processes"] == 1
    assert rep["fallback_face_frames"] < rep["face_frames"]


def test_processes_nobody_takes_are_ended(monkeypatch):
    started = []
    start = rp_module._start
    monkeypatch.setattr(rp_module, "_start", lambda spec: started.append(start(spec)) or started[-1])
    for o in (Options(restorer="gan"), Options(track_only=True), Options(restore_processes=0),
              Options(restorer="classic")):  # the GAN tier, no restorer, none asked for, a light restorer
        rp_module.start_early(o)
    assert started == []
    rp_module.start_early(Options(restorer="prior", restore_processes=2))
    assert len(started) == 2
    rp_module.stop_early()
    assert rp_module._EARLY == {}
    assert all(p.wait(timeout=30) is not None for _, p in started)


def test_the_cli_ends_its_early_processes_on_bad_input(tmp_path, monkeypatch):
    from ideud.stream.errors import InputError
    from ideud.tools import cli

    started = []
    start = rp_module._start
    monkeypatch.setattr(rp_module, "_start", lambda spec: started.append(start(spec)) or started[-1])
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(InputError):  # the front door prints it in one line, exit 2 (tests/test_new_user.py)
        cli.run([str(bad), str(tmp_path / "out.mp4"), "--restorer", "prior", "--restore-processes", "1"])
    assert len(started) == 1 and rp_module._EARLY == {}
    assert started[0][1].wait(timeout=30) is not None  # killed, not left behind
    assert not (tmp_path / "out.mp4").exists()
