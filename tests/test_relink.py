"""A person who comes back gets the same new face (stream/relink.py). Before, every track drew a
seed of its own: a person seen again after a scene cut, or after walking out of the picture and
in again, came back as somebody else."""
import io
import json
import subprocess
import sys

import av
import numpy as np
import pytest

from clips import read_frames, write_clip
from footage import _paste, background, portrait_head
from ideud.stream.pipeline import Options, deidentify
from ideud.stream.relink import LINK_MIN, MAX_PEOPLE, Relinker, _Person
from ideud.stream.types import Track

W, H = 480, 270
FACE = (slice(70, 230), slice(60, 220))  # around the place where both people stand


def _shots(first: int, second: int, n: int = 16) -> list[np.ndarray]:
    """Shot 1 (person `first` on the left), a cut to shot 2 (person `second` at the same place,
    on the same background), a cut back to shot 1: the same frames as the first time."""
    bg_a, bg_b = background(W, H, seed=21), np.ascontiguousarray(255 - background(W, H, seed=22))
    a, b = portrait_head(first, 200), portrait_head(second, 200)
    shot1, shot2 = [], []
    for i in range(n):
        img = bg_a.copy()
        _paste(img, a, 140 + 2 * i, 150, 1.0, 0.0)
        shot1.append(img)
        img = bg_b.copy()
        _paste(img, b, 140 + 2 * i, 150, 1.0, 0.0)
        shot2.append(img)
    return shot1 + shot2 + shot1


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("relink") / "shots.mp4"
    write_clip(str(path), _shots(1, 2), codec="libx264")
    return path


def _tracks(rep) -> list[tuple]:
    return [(t["first_frame"], t.get("same_person_as")) for t in rep["tracks"]]


def test_a_person_seen_again_after_a_cut_gets_the_same_new_face(clip, tmp_path):
    """At default settings: the third shot's track is linked to the first's, the other person (in the
    same place, on the same background) is not, and the face drawn in the third shot is the one
    drawn in the first (the frames are the same), where without linking it is another."""
    faces = {}
    for relink in (True, False):
        dst = tmp_path / f"o_{relink}.mp4"
        rep = deidentify(str(clip), str(dst), Options(seed=4, relink=relink))
        assert rep["scene_cuts"] == 2 and len(rep["tracks"]) == 3
        first = rep["tracks"][0]["id"]
        assert _tracks(rep) == ([(0, None), (16, None), (32, first)] if relink else [(0, None), (16, None), (32, None)])
        assert rep.get("tracks_relinked") == (1 if relink else None)
        assert rep.get("tracks_unlinked") == (0 if relink else None)
        assert rep["fallback_face_frames"] == 0  # all three rendered here: the comparison is between new faces
        out, src = read_frames(dst), read_frames(clip)
        faces[relink] = [np.abs(out[k + 32][FACE].astype(int) - out[k][FACE]).mean() for k in (6, 10, 14)]
        drawn = [np.abs(out[k][FACE].astype(int) - src[k][FACE]).mean() for k in (6, 10, 14)]
        assert min(drawn) > 2.0  # a new face was drawn in the first shot
    # linked: as alike as the input's two encodings of the same frames (1.7 levels apart here: the
    # encoder's noise); not linked: another new face (3.7 here)
    noise = max(np.abs(src[k + 32][FACE].astype(int) - src[k][FACE]).mean() for k in (6, 10, 14))
    assert max(faces[True]) < noise + 0.5
    assert min(faces[False]) > 1.6 * max(faces[True])


def test_relink_off_from_the_command_line_and_nothing_of_the_person_in_the_report(clip, tmp_path):
    rep_path = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "ideud.tools.cli", str(clip), str(tmp_path / "o.mp4"), "--privacy", "off",
                          "--restorer", "classic", "--seed", "4", "--relink", "off", "--report", str(rep_path), "-qq"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rep = json.loads(rep_path.read_text())
    assert "tracks_relinked" not in rep and all("same_person_as" not in t for t in rep["tracks"])
    run = subprocess.run([sys.executable, "-m", "ideud.tools.cli", str(clip), str(tmp_path / "o2.mp4"), "--privacy", "off",
                          "--restorer", "classic", "--seed", "4", "--report", str(rep_path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = run.stderr.strip().splitlines()[-1]
    assert "48 frames, 3 face tracks (1 of them a person seen before, given the same new face)" in summary, summary
    rep = json.loads(rep_path.read_text())
    assert rep["tracks_relinked"] == 1
    linked = [t for t in rep["tracks"] if "same_person_as" in t]
    assert len(linked) == 1 and isinstance(linked[0]["same_person_as"], int)  # a track number, nothing more
    assert "embedding" not in rep_path.read_text() and "seed\"" not in rep_path.read_text()


def test_a_live_stream_links_too(clip, tmp_path):
    """The same on a live input (a pipe, as a camera's MPEG-TS would come), where the guard spreads
    its search over frames: the returning person's track is linked."""
    ts = io.BytesIO()
    with av.open(str(clip)) as i, av.open(ts, "w", format="mpegts") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    rep_path = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "ideud.tools.cli", "-", str(tmp_path / "o.mkv"), "--seed", "4",
                          "--report", str(rep_path), "-qq"], input=ts.getvalue(), capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    rep = json.loads(rep_path.read_text())
    assert rep["live"]["dropped_frames"] == 0
    assert rep["tracks_relinked"] == 1
    assert [t.get("same_person_as") for t in rep["tracks"]] == [None, None, rep["tracks"][0]["id"]]


def test_the_people_kept_are_bounded():
    """Memory only, bounded: the longest unseen person is forgotten past MAX_PEOPLE."""
    r = Relinker(lambda t: {}, lambda *a: None, edge=object())
    for i in range(MAX_PEOPLE + 5):
        r._people[i] = _Person(seed=i, first_track=i, last_track=i, views=[np.ones(4) / 2], last_time=float(i))
    r._forget_old(now=float(MAX_PEOPLE + 5))
    assert len(r._people) == MAX_PEOPLE and min(r._people) == 5


def test_two_people_alike_are_not_linked():
    """The best match must stand out: two people within LINK_GAP of each other link neither."""
    r = Relinker(lambda t: {}, lambda *a: None, edge=object())
    e = np.eye(8)[0]
    near = LINK_MIN + 0.05
    for seed, v in ((1, e * 0 + np.r_[near, np.sqrt(1 - near ** 2), 0, 0, 0, 0, 0, 0]),
                    (2, np.r_[near - 0.02, 0, np.sqrt(1 - (near - 0.02) ** 2), 0, 0, 0, 0, 0])):
        r._people[seed] = _Person(seed=seed, first_track=seed, last_track=seed, views=[v])
    assert r._match(e) is None
    del r._people[2]
    assert r._match(e) is r._people[1]


def test_an_unlinked_track_goes_on_as_a_person_of_its_own():
    """`unlink` (the guard found no passing face under the person's seed): the track's own seed back,
    the link gone from the report, asked once."""
    r = Relinker(lambda t: {}, lambda *a: None, edge=object())
    track = Track(id=5, seed=11, box=np.zeros(4), first_frame=0, last_frame=0)
    r._people[11] = _Person(seed=11, first_track=1, last_track=5, active={5})
    r._person_of[5], r._own[5], r.same_person_as[5] = r._people[11], (track, 77), 1
    assert r.unlink(5) == 77 and track.seed == 77
    assert 5 not in r.same_person_as and r.report() == {"tracks_relinked": 0, "tracks_unlinked": 1}
    assert not r._people[11].active and r._person_of[5] is r._people[77]
    assert r.unlink(5) is None
