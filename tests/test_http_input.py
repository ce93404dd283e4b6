"""A video file behind an http(s) URL is a recording, not a live stream. Run as a stream (as every
network URL was), it was paced, dropped frames when behind, and at its end "reconnected" and read
it again from the start, without end: killed after 5 minutes, a 100-frame file had become 8,399
written frames, 25,401 dropped, and nearly every face obfuscated by the stream's degrade steps.
Now a URL whose container says how long it is runs as a file: every frame once, then exit 0."""
from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading

import av
import pytest

from clips import moving_faces, write_clip
from live_support import CLI
from ideud.stream.live_io import is_recording

N = 20


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def served(tmp_path):
    """The folder `tmp_path` on a real HTTP server (Python's; no range requests: MKV, read straight through)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(5)


def test_a_file_behind_a_url_is_run_as_a_file(tmp_path, served):
    write_clip(str(tmp_path / "clip.mkv"), moving_faces(N, 320, 180, size=100), audio=True)
    url, out, rep = f"{served}/clip.mkv", tmp_path / "out.mkv", tmp_path / "r.json"
    assert is_recording(url) and not is_recording(f"{served}/nothing-here.mkv")
    p = subprocess.run([*CLI, url, str(out), "-q", "--privacy", "off", "--restorer", "classic", "--report", str(rep)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    report = json.loads(rep.read_text())
    assert "live" not in report and report["frames"] == N and report["face_frames"] == N
    assert report["fallback_face_frames"] == 0  # de-identified, not obfuscated by a stream's degrade steps
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == N and len(c.streams.audio) == 1
