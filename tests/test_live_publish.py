"""Publishing the de-identified stream to a media server: RTMP into a real nginx-rtmp
(Debian's nginx-light + libnginx-mod-rtmp, run here on a free port), played back from it while the
run publishes, as a viewer would; and RTSP RECORD into Debian's GStreamer RTSP server, which writes
what it receives to a file. Every frame that arrives has its face de-identified, the camera's audio
comes along over RTMP, and SIGINT ends the publication cleanly."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import av
import numpy as np
import pytest

from clips import TONE_HZ, audio_of, loudest_hz, moving_faces, write_clip
from live_support import (FPS, H, N, RAW_LIMIT, SIZE, W, Cli, RtspServer, check_timestamps, face_box, free_port,
                          no_server, raw_face_frames, server_missing)

RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
CONFIG = """load_module {module};
daemon off;
master_process off;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}
"""


@pytest.fixture(scope="module")
def tone_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("publish") / "faces_tone.mp4"
    write_clip(path, moving_faces(N, W, H, size=SIZE), fps=FPS, audio=True, options={"bf": "0", "g": str(FPS)})
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]
    return path, frames


@pytest.fixture()
def rtmp_server(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx) or not os.path.exists(RTMP_MODULE):
        no_server("no nginx with the RTMP module for the publishing test (run .ci/setup_live.sh)")
    port = free_port()
    (tmp_path / "nginx.conf").write_text(CONFIG.format(module=RTMP_MODULE, dir=tmp_path, port=port))
    proc = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        no_server(f"nginx-rtmp did not start: {proc.stderr.read()[-300:] if proc.poll() is not None else 'no answer'}")
    yield f"rtmp://127.0.0.1:{port}/live/cam"
    proc.kill()
    proc.wait(timeout=10)


def test_rtmp_publish_is_deidentified_with_audio(rtmp_server, tone_clip):
    clip, source = tone_clip
    got: dict = {"frames": [], "audio": [], "error": None}

    def view():  # a viewer (nginx-rtmp holds one that subscribes before the publisher starts)
        try:
            with av.open(rtmp_server, timeout=(60, 5)) as c:
                for p in c.demux():
                    if p.stream.type == "audio" and p.pts is not None:
                        got["audio"].append(float(p.pts * p.time_base))
                    elif p.stream.type == "video":
                        for f in p.decode():
                            got["frames"].append((float(f.pts * f.time_base), f.to_ndarray(format="gray").astype(np.int16)))
        except av.error.FFmpegError as e:  # the read timeout once the publication ends
            got["error"] = e

    viewer = threading.Thread(target=view, daemon=True)
    viewer.start()
    cli = Cli(clip, rtmp_server, "--live", "--seed", "9")  # a file with --live plays in real time
    t0 = cli.events[cli.wait_event("frame_written")]["t"]
    cli.wait_event("frame_written", where=lambda e: e["t"] - t0 >= 3.0)
    cli.proc.send_signal(signal.SIGINT)
    assert cli.finish(90) == 0, cli.stderr
    viewer.join(timeout=60)
    written = cli.events[-1]["written"]
    frames = got["frames"]
    assert cli.events[-1]["kind"] == "stopped" and written >= 20  # (a slow machine drops frames: fewer)
    assert frames, f"nothing viewed ({got['error']})"
    # the frames published while the viewer watched (it may join late): FLV carries the run's clock from its first frame
    shown = sum(1 for e in cli.events if e["kind"] == "frame_written" and e["t"] - t0 >= frames[0][0] - 1e-3)
    assert len(frames) >= 0.8 * shown, f"{len(frames)} frames viewed of {shown} published meanwhile ({got['error']})"
    times = check_timestamps(frames)
    assert times[-1] - times[0] >= 2.0  # the viewer saw most of the ~3 s published
    raw, offsets = raw_face_frames(frames, source)  # FLV carries the run's output clock (0 = its first frame)
    assert raw == [] and offsets.count(0) >= 0.8 * len(offsets)
    assert got["audio"], "no audio viewed"
    assert abs((got["audio"][-1] - got["audio"][0]) - (times[-1] - times[0])) <= 0.5


def _record(source, tmp_path, *args, audio: bool = False) -> tuple:
    """Publish `source` live into GStreamer's RTSP server in record mode for ~3 s, then SIGINT:
    (the frames it received, gray; the seconds of output clock the run wrote). With `audio` the
    server writes the audio to a file of its own beside (`received.ts.aac`)."""
    reason = server_missing()
    if reason:
        no_server(f"no RTSP server for the publishing test: {reason} (run .ci/setup_live.sh)")
    recorded = tmp_path / "received.ts"
    srv = RtspServer(recorded, free_port(), audio=audio, record=True).start()
    try:
        cli = Cli(source, srv.url, "--live", "--seed", "10", *args)
        t0 = cli.events[cli.wait_event("frame_written")]["t"]
        cli.wait_event("frame_written", where=lambda e: e["t"] - t0 >= 3.0)
        cli.proc.send_signal(signal.SIGINT)
        assert cli.finish(90) == 0, cli.stderr
        written = cli.events[-1]["written"]
        # the run's output clock: the audio spans it (frames dropped under load leave the video short, not the audio)
        span = max(e["t"] for e in cli.events if e["kind"] == "frame_written") - t0 + 1 / FPS
        deadline = time.monotonic() + 30  # the server writes what it received: wait for all of it
        while time.monotonic() < deadline and (not recorded.exists() or _frames(recorded) < 0.8 * written
                                               or (audio and _audio_seconds(f"{recorded}.aac") < span - 0.5)):
            time.sleep(0.5)
    finally:
        srv.kill()
    frames = _decoded(recorded)
    assert written >= 20 and len(frames) >= 0.8 * written, (len(frames), written)
    return frames, span


def _assert_deidentified(frames: list, source: list) -> None:
    """The server stamps frames as they arrive, so each received face is compared with every frame
    of the clip, not the one its time names."""
    boxes = [face_box(j) for j in range(len(source))]
    best = [min(float(np.abs(img[b] - src[b]).mean()) for b, src in zip(boxes, source)) for img in frames]
    assert min(best) >= RAW_LIMIT, f"a received face matches the clip's ({min(best):.2f} levels)"


def test_rtsp_record_publish_is_deidentified(tone_clip, tmp_path):
    """RTSP RECORD (what a camera or an encoder pushing to a media server does): the server's file
    holds the published frames, every face de-identified."""
    clip, source = tone_clip
    frames, _ = _record(clip, tmp_path, "--no-audio")
    _assert_deidentified(frames, source)


def test_rtsp_record_publish_carries_a_cameras_adts_audio(tone_clip, tmp_path):
    """RTSP RECORD with audio: an MPEG-TS source's ADTS AAC (a camera's) goes out as the RTP AAC the
    announced SDP describes (raw frames, their configuration read from the ADTS headers): the server
    receives the 440 Hz tone, about as long as the video it received, beside faces de-identified."""
    clip, source = tone_clip
    ts = tmp_path / "camera.ts"
    with av.open(str(clip)) as i, av.open(str(ts), "w", format="mpegts") as o:
        out = {st.index: o.add_stream_from_template(st) for st in (i.streams.video[0], i.streams.audio[0])}
        for p in i.demux():
            if p.dts is not None:
                p.stream = out[p.stream.index]
                o.mux(p)
    frames, span = _record(ts, tmp_path, audio=True)
    _assert_deidentified(frames, source)
    tone, rate, _ = audio_of(tmp_path / "received.ts.aac")
    assert abs(tone.size / rate - span) <= 0.5, (tone.size / rate, span)
    assert abs(loudest_hz(tone, rate) - TONE_HZ) < 5


def _decoded(path) -> list:
    """The recording's frames. The server is killed once enough has arrived, so the file can end
    inside a packet: a packet the decoder refuses is skipped (the caller still asks for 80 % of the
    frames written; a twentieth-session CI run failed on such a cut tail)."""
    frames = []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            try:
                frames += [f.to_ndarray(format="gray").astype(np.int16) for f in packet.decode()]
            except av.error.InvalidDataError:
                continue
    return frames


def _audio_seconds(path) -> float:
    try:
        tone, rate, _ = audio_of(path)
    except av.error.FFmpegError:  # not there yet, or nothing decodable in it yet
        return 0.0
    return tone.size / rate if rate else 0.0


def _frames(path) -> int:
    try:
        return len(_decoded(path))
    except av.error.FFmpegError:
        return 0
