"""The command line: bad input gets one line and a non-zero exit, never a traceback."""
import hashlib
import os
import subprocess
import sys

import av

CLI = [sys.executable, "-m", "ideud.tools.cli"]


def run(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_line_error(proc, code=2):
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("ideud-video: error:")
    return lines[0]


def test_missing_file(tmp_path):
    line = one_line_error(run(tmp_path / "nope.mp4", tmp_path / "o.mp4"))
    assert "no such file" in line
    assert not (tmp_path / "o.mp4").exists()


def test_text_file_renamed_mp4(tmp_path):
    src = tmp_path / "notes.mp4"
    src.write_text("this is not a video\n" * 20)
    before = src.read_bytes()
    one_line_error(run(src, tmp_path / "o.mp4"))
    assert src.read_bytes() == before
    assert os.listdir(tmp_path) == ["notes.mp4"]  # no temp file left behind


def test_zero_byte_file(tmp_path):
    src = tmp_path / "empty.mp4"
    src.write_bytes(b"")
    one_line_error(run(src, tmp_path / "o.mp4"))
    assert os.listdir(tmp_path) == ["empty.mp4"]


def test_output_is_input(face_clip):
    before = hashlib.sha256(face_clip.read_bytes()).hexdigest()
    line = one_line_error(run(face_clip, face_clip))
    assert "input" in line
    line = one_line_error(run(face_clip, face_clip, "--force"))
    assert hashlib.sha256(face_clip.read_bytes()).hexdigest() == before


def test_existing_output_needs_force(face_clip, tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    assert "--force" in one_line_error(run(face_clip, out))
    assert out.read_bytes() == b"keep me"


def test_unwritable_output_folder(face_clip, tmp_path):
    one_line_error(run(face_clip, tmp_path / "missing" / "o.mp4"), code=2)


def test_bad_option_value(face_clip, tmp_path):
    one_line_error(run(face_clip, tmp_path / "o.mp4", "--det-threshold", "3"))
    # more frames without detection than the look-back hides before a first find
    assert "--detect-every must be between 1 and 3" in one_line_error(run(face_clip, tmp_path / "o.mp4",
                                                                           "--detect-every", "4"))


def test_help_explains_every_option():
    out = run("--help").stdout
    for opt in ("--scale", "--seed", "--min-face", "--det-threshold", "--codec", "--crf", "--no-audio",
                "--report", "--force", "--keep-metadata", "--quiet", "--fallback", "--restorer", "--detect-every"):
        assert opt in out


def test_run_writes_report_and_output(face_clip, tmp_path):
    out, rep = tmp_path / "o.mp4", tmp_path / "r.json"
    p = run(face_clip, out, "--report", rep, "--seed", "1", "--quiet")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    with av.open(str(out)) as c:
        assert c.streams.video[0].frames == 30
    import json

    r = json.loads(rep.read_text())
    assert r["frames"] == 30 and r["tracks"]
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_demo_side_by_side(tmp_path):
    out = tmp_path / "demo.mp4"
    p = run("demo", out, "--frames", "12", "--seed", "1")
    assert p.returncode == 0, p.stderr
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.width == 2 * 640 and v.frames == 12


def test_defaults_come_from_options():
    from ideud.stream.options import Options
    from ideud.tools import batch, cli

    single = cli.parser().parse_args(["in.mp4", "out.mp4"])
    many = batch.parser().parse_args(["in.mp4", "--out", "d"])
    o = Options()
    for name in ("scale", "seed", "restorer", "fallback", "privacy", "gan_engine", "restore_ahead", "min_face",
                 "det_threshold", "detector", "detect_every", "codec", "crf", "preset", "keep_metadata"):
        assert getattr(single, name) == getattr(many, name) == getattr(o, name), name
    assert single.no_audio is (not o.audio) and single.force is o.force


def test_batch_shares_the_pipeline_checks(tmp_path):
    for args in (["--crf", "-5"], ["--det-threshold", "3"]):
        p = subprocess.run([*CLI, "batch", str(tmp_path), "--out", str(tmp_path / "o"), *args],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.startswith("ideud-video: error:"), p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_report_file_of_a_seeded_run_holds_neither_the_seed_nor_the_noise(face_clip, tmp_path):
    """--report with --seed: with the noise, or the seed (and the guard's choice), anyone holding the
    output and the report could subtract the noise from the output's fitted code and undo Step I."""
    import json

    from ideud.stream.pipeline import FaceProcessor, Options, deidentify
    from report_checks import assert_no_way_back

    seed = 918273645  # distinctive: its digits do not turn up in a report by chance
    out, rep = tmp_path / "o.mp4", tmp_path / "r.json"
    p = run(face_clip, out, "--report", rep, "--seed", seed, "--quiet")
    assert p.returncode == 0, p.stderr
    r = json.loads(rep.read_text())
    assert r["tracks"] and r["options"]["seed_given"] is True and "seed" not in r["options"]
    # the same seeded run in this process: the tracks' noise it held in memory (the same draws)
    o = Options(seed=seed)
    proc = FaceProcessor(o)
    try:
        mine = deidentify(str(face_clip), str(tmp_path / "same.mp4"), o, processor=proc)
        noises = [proc.identity.noise_of(t["id"]) for t in mine["tracks"]]
    finally:
        proc.close()
    assert noises and all(n is not None for n in noises)
    assert_no_way_back(r, seed=seed, noises=noises)
    assert_no_way_back(mine, seed=seed, noises=noises)
