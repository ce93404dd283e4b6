"""What the live tests share: the RTSP server in a subprocess, the CLI in a subprocess with its live
events, an in-process event log, and the checks on decoded output (timestamps, untouched faces)."""
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "rtsp_server.py"
SYSTEM_PY = "/usr/bin/python3"  # Debian's python3: the one with python3-gi (a venv's python has no gi)
CLI = [sys.executable, "-m", "ideud.tools.cli"]
W, H, SIZE, FPS, N = 480, 270, 200, 25, 300  # 12 s clip, one moving face


def no_server(reason: str):
    """Skip, with the reason; in a CI that installed the server (IDEUD_LIVE_REQUIRED=1) fail instead."""
    if os.environ.get("IDEUD_LIVE_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_missing() -> str:
    if not os.path.exists(SYSTEM_PY):
        return f"{SYSTEM_PY} not found"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "missing = [e for e in ('filesrc', 'qtdemux', 'h264parse', 'rtph264pay', 'aacparse', 'rtpmp4gpay', 'queue') if not Gst.ElementFactory.find(e)];"
             "print(' '.join(missing))")
    try:
        p = subprocess.run([SYSTEM_PY, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {SYSTEM_PY}: {e}"
    if p.returncode != 0:
        return "GStreamer RTSP server not importable (" + (p.stderr.strip().splitlines() or ["?"])[-1] + ")"
    if p.stdout.strip():
        return f"GStreamer elements missing: {p.stdout.strip()}"
    return ""


class RtspServer:
    """tests/rtsp_server.py in a subprocess; kill() is a real outage."""

    def __init__(self, clip: Path, port: int, audio: bool = False, record: bool = False):
        """record: take a client's published stream into `clip` (RTSP RECORD) instead of serving it."""
        self.clip, self.port, self.proc, self.audio, self.record = clip, port, None, audio, record
        self.url = f"rtsp://127.0.0.1:{port}/test"

    def start(self, timeout: float = 15) -> "RtspServer":
        self.proc = subprocess.Popen([SYSTEM_PY, str(SERVER), *(["--record"] if self.record else []), str(self.clip),
                                      str(self.port), *(["audio"] if self.audio else [])],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        err = self.proc.stderr.read() if self.proc.poll() is not None else "no answer"
        self.kill()
        no_server(f"the RTSP server did not start: {err.strip()[-300:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


EVENT_PREFIX = "ideud-live-event "
DEADLINE = 90  # s: generous; a wait that passes returns as soon as its event arrives


class Cli:
    """ideud-video in a subprocess; stderr read on a thread so waits can be bounded. The live loop's
    events ($IDEUD_LIVE_EVENTS=stderr) are parsed into `events`; `wait_event` waits on them.

    The privacy guard is off unless a test asks for it: these tests are about stream mechanics, and
    the test face (the astronaut) is a donor of the embedded restorer, so the guard spends seconds
    searching and then pixelates her (tests/test_guard.py; test_slow_pipeline_drops_before_processing
    runs with it on)."""

    def __init__(self, *args):
        args = list(args) if "--privacy" in args else [*args, "--privacy", "off"]
        self.proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "IDEUD_LIVE_EVENTS": "stderr"})
        self.lines: list[str] = []  # stderr without the event lines
        self.events: list[dict] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            with self._changed:
                if line.startswith(EVENT_PREFIX):
                    self.events.append(json.loads(line[len(EVENT_PREFIX):]))
                else:
                    self.lines.append(line)
                self._changed.notify_all()
        with self._changed:  # stderr closed: the process is ending; wake the waiters
            self._changed.notify_all()

    def _wait(self, found, what: str, timeout: float):
        with self._changed:
            ok = self._changed.wait_for(lambda: found() is not None or not self._reader.is_alive(), timeout)
            hit = found()
        if hit is not None:
            return hit
        self.stop()
        why = f"within {timeout} s" if not ok else "before ideud-video ended"
        raise AssertionError(f"no {what} {why}; stderr:\n" + "\n".join(self.lines))

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        """The first stderr line containing `text`."""
        return self._wait(lambda: next((ln for ln in self.lines if text in ln), None), repr(text), timeout)

    def wait_event(self, kind: str, timeout: float = DEADLINE, after: int = 0, where=lambda e: True,
                   count: int = 1) -> int:
        """Wait for the `count`-th event `kind` (matching `where`) at or after index `after` in `events`;
        returns its index."""
        def found():
            hits = [i for i in range(after, len(self.events))
                    if self.events[i]["kind"] == kind and where(self.events[i])]
            return hits[count - 1] if len(hits) >= count else None

        return self._wait(found, f"{count} {kind!r} event(s)", timeout)

    def finish(self, timeout: float = 60) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("ideud-video did not finish; stderr:\n" + "\n".join(self.lines))
        self._reader.join(timeout=5)
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def decode_all(path, cut_tail_ok: bool = False) -> list[tuple[float, np.ndarray]]:
    """(time s, grey image) of every frame; raises if the file does not play to its end
    (unless `cut_tail_ok`: a file cut mid-write may end in a partial packet)."""
    frames = []
    with av.open(str(path)) as c:
        try:
            for f in c.decode(video=0):
                frames.append((float(f.pts * f.time_base), f.to_ndarray(format="gray").astype(np.int16)))
        except av.error.InvalidDataError:
            if not (cut_tail_ok and frames):
                raise
    return frames


def face_box(j: int):
    """Where moving_faces put the face (not the whole head square) in clip frame j."""
    t = j / (N - 1)
    cx = W / 2 + 20 * math.sin(2 * math.pi * t)
    cy = H / 2 + 10 * math.cos(2 * math.pi * t)
    return slice(int(cy - 0.3 * SIZE), int(cy + 0.2 * SIZE)), slice(int(cx - 0.25 * SIZE), int(cx + 0.25 * SIZE))


# An untouched face after one more lossy encode differs from its source by ~1.4 grey levels on average
# (measured; a 1-frame misalignment ~3.2); a de-identified one by >3.3 even against its best-matching
# neighbour. RAW_LIMIT sits between, and raw_face_frames() is checked against a real re-encode below.
RAW_LIMIT = 2.2


def raw_face_frames(frames, source, origin: float = 0.0) -> tuple[list[int], list[int]]:
    """Output frames whose face matches a source face (never allowed), and each frame's best-matching
    clip frame offset from the one its timestamp names (0 when timestamps follow the source clock)."""
    raw, offsets = [], []
    for k, (t, img) in enumerate(frames):
        j = round((t - origin) * FPS)
        if not 0 <= j < len(source):
            continue
        fb = face_box(j)
        near = range(max(j - 2, 0), min(j + 3, len(source)))
        diffs = [float(np.abs(img[fb] - source[i][fb]).mean()) for i in near]
        if min(diffs) < RAW_LIMIT:
            raw.append(k)
        # alignment, judged on the (untouched) background strip the head sweeps over
        strip = (slice(0, H), slice(int(W / 2 - 0.5 * SIZE - 25), int(W / 2 - 0.5 * SIZE + 5)))
        bg = [float(np.abs(img[strip] - source[i][strip]).mean()) for i in near]
        offsets.append(list(near)[int(np.argmin(bg))] - j)
    return raw, offsets


def check_timestamps(frames):
    times = [t for t, _ in frames]
    assert all(b > a for a, b in zip(times, times[1:])), "output timestamps not strictly increasing"
    return times



class EventLog:
    """LiveOptions.on_event for an in-process run: events from the live loop's threads, in order."""

    def __init__(self):
        self.items: list[dict] = []
        self._lock = threading.Lock()

    def add(self, kind: str, **fields) -> None:
        with self._lock:
            self.items.append({"kind": kind, **fields})



def udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to this UDP port (read from /proc: probing with a bind of our
    own would race the receiver's bind and could make it fail)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        if any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in rows if row.strip()):
            return True
    return False


def wait_until_bound(port: int, receiver: threading.Thread, timeout: float = 30) -> None:
    """Until the receiver thread's socket is bound to the UDP port (or it has ended: its error shows later)."""
    if not os.path.exists("/proc/net/udp"):
        time.sleep(1.0)  # no socket table to read (not Linux): the CLI's start-up takes longer anyway
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and receiver.is_alive():
        if udp_port_bound(port):
            return
        time.sleep(0.05)
    if receiver.is_alive():
        raise AssertionError(f"the UDP receiver did not bind port {port} within {timeout} s")

