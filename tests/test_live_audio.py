"""Live runs keep the source's audio: copied packet by packet (never decoded), on the output clock.

A pipe (MPEG-TS with AAC, as `ffmpeg ... -f mpegts -` gives) and a real RTSP server sending the
clip's AAC track as a second RTP stream (tests/rtsp_server.py `audio`). The audio written is decoded
again here: the source's 440 Hz tone, as long as the video, in step with it; `--no-audio` drops it.
"""
import json
import signal
import subprocess

import av
import numpy as np
import pytest

from clips import TONE_HZ, as_mpegts, audio_of, loudest_hz, moving_faces, write_clip
from live_support import CLI, FPS, H, SIZE, W, Cli, RtspServer, free_port, no_server, server_missing
from ideud.stream.audio_transcode import holds_as_is, takes_audio
from ideud.stream.live_audio import adts_config

N_PIPE = 50


@pytest.fixture(scope="module")
def audio_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("live_audio") / "faces_tone.mp4"
    write_clip(path, moving_faces(N_PIPE, W, H, size=SIZE), fps=FPS, audio=True, options={"bf": "0", "g": str(FPS)})
    return path


def _tracks(path) -> tuple[list[float], np.ndarray, int, float]:
    """(video frame times, the decoded audio as mono float, its sample rate, its first time); audio
    empty when there is none."""
    with av.open(str(path)) as c:
        video = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    return (video, *audio_of(path))


def _check_tone(video: list[float], audio: np.ndarray, rate: int, start: float) -> None:
    """The source's 440 Hz tone, starting with the video and about as long (a frame or two either way)."""
    assert rate and audio.size, "no audio written"
    assert abs(start - video[0]) <= 0.15, (start, video[0])
    seconds = audio.size / rate
    span = video[-1] - video[0] + 1 / FPS
    assert abs(seconds - span) <= 0.25, (seconds, span)
    assert abs(loudest_hz(audio, rate) - TONE_HZ) < 5


def test_adts_header_gives_the_aac_configuration():
    # AAC LC (profile 1), 48 kHz (index 3), mono: ADTS FFF1 4C 40 ... -> AudioSpecificConfig 11 88
    assert adts_config(bytes([0xFF, 0xF1, 0x4C, 0x40, 0x0F, 0xFF, 0xFC])) == bytes([0x11, 0x88])
    assert adts_config(b"\x00\x01\x02\x03\x04\x05\x06") is None


def test_rtsp_holds_aac_asked_through_rtp(audio_clip):
    # RTSP's muxer does its own network I/O and cannot write a header into memory: it was taken for a
    # container that holds no audio, and the camera's sound was dropped (the RTP muxer is asked instead)
    class RtspOutput:
        format = av.format.ContainerFormat("rtsp")

    with av.open(str(audio_clip)) as c:
        assert holds_as_is(RtspOutput, c.streams.audio[0])
    assert takes_audio(RtspOutput, "aac")


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_pipe_audio_is_copied_in_step(audio_clip, tmp_path, ext):
    """MPEG-TS on stdin (ADTS AAC): a fragmented MP4 takes it as raw AAC with its configuration, Matroska as it is."""
    out = tmp_path / f"out.{ext}"
    p = subprocess.run([*CLI, "-", out, "--report", tmp_path / "r.json", "--quiet", "--seed", "3", "--privacy", "off"],
                       input=as_mpegts(audio_clip), capture_output=True, timeout=180)
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["live"]["dropped_frames"] == 0
    with av.open(str(audio_clip)) as c:
        sent = sum(1 for pk in c.demux(audio=0) if pk.size)
    copied = r["output"]["audio_packets"]["copied"]
    assert sent - 4 <= copied <= sent, (copied, sent)  # those before the first video frame may go
    video, *audio = _tracks(out)
    assert len(video) == N_PIPE
    _check_tone(video, *audio)


def test_no_audio_drops_it(audio_clip, tmp_path):
    out = tmp_path / "out.mkv"
    p = subprocess.run([*CLI, "-", out, "--quiet", "--no-audio", "--privacy", "off"], input=as_mpegts(audio_clip),
                       capture_output=True, timeout=180)
    assert p.returncode == 0, p.stderr.decode()
    with av.open(str(out)) as c:
        assert not c.streams.audio


def test_rtsp_camera_with_microphone(audio_clip, tmp_path):
    """A camera's AAC over RTSP (its own RTP stream, its own clock) comes out with the video, until SIGINT."""
    reason = server_missing()
    if reason:
        no_server(f"no RTSP server for the live tests: {reason} (run .ci/setup_live.sh)")
    srv = RtspServer(audio_clip, free_port(), audio=True).start()
    try:
        out = tmp_path / "cam.mkv"
        cli = Cli(srv.url, out, "--seed", "8")
        t0 = cli.events[cli.wait_event("frame_written")]["t"]
        cli.wait_event("frame_written", where=lambda e: e["t"] - t0 >= 1.2)
        cli.proc.send_signal(signal.SIGINT)
        assert cli.finish(90) == 0, cli.stderr
    finally:
        srv.kill()
    video, *audio = _tracks(out)
    _check_tone(video, *audio)


def test_segments_each_carry_their_audio(audio_clip, tmp_path):
    """Rolling segments: each file holds the audio of its own stretch of video, none lost at the cuts."""
    p = subprocess.run([*CLI, "-", tmp_path / "seg.mkv", "--segment", "0.8s", "--report", tmp_path / "r.json", "--quiet",
                        "--privacy", "off"], input=as_mpegts(audio_clip), capture_output=True, timeout=180)
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads((tmp_path / "r.json").read_text())
    files = r["output"]["files"]
    assert len(files) >= 2
    for f in files:
        video, audio, rate, start = _tracks(f)
        assert rate and abs(audio.size / rate - len(video) / FPS) <= 0.1, (f, audio.size / rate, len(video))
    with av.open(str(audio_clip)) as c:
        sent = sum(1 for pk in c.demux(audio=0) if pk.size)
    assert sent - 4 <= r["output"]["audio_packets"]["copied"] <= sent


def test_audio_goes_on_after_a_reconnect(audio_clip, tmp_path):
    """The camera drops out and comes back: the file stays open and its audio resumes with the
    video after the gap (the new connection's streams, never the closed ones')."""
    reason = server_missing()
    if reason:
        no_server(f"no RTSP server for the live tests: {reason} (run .ci/setup_live.sh)")
    port = free_port()
    srv = RtspServer(audio_clip, port, audio=True).start()
    out = tmp_path / "cam.mkv"
    try:
        cli = Cli(srv.url, out, "--reconnect", "5", "--seed", "2")
        t0 = cli.events[cli.wait_event("frame_written")]["t"]
        cli.wait_event("frame_written", where=lambda e: e["t"] - t0 >= 0.8)
        srv.kill()
        srv = RtspServer(audio_clip, port, audio=True).start()
        back = cli.wait_event("reconnected")
        after = cli.events[cli.wait_event("frame_written", after=back + 1)]["t"]
        cli.wait_event("frame_written", where=lambda e: e["t"] - after >= 0.8)
        cli.proc.send_signal(signal.SIGINT)
        assert cli.finish(90) == 0, cli.stderr
    finally:
        srv.kill()
    with av.open(str(out)) as c:
        audio = [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.pts is not None and p.size]
    # (the file's clock starts at its first frame, t0 on the run's)
    assert audio and audio[0] <= 0.15 and audio[-1] >= after - t0 + 0.5, (audio[:1], audio[-1:], after - t0)
