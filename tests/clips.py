"""Test media, made at test time from the public-domain astronaut portrait."""
from __future__ import annotations

import io
import itertools
import math
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACES_DIR = SHARED / "testdata" / "faces"


TONE_HZ = 440  # the tone `write_clip(audio=True)` puts in

def astronaut() -> np.ndarray:
    """512x512 RGB portrait (NASA, public domain)."""
    data = resources.files("ideud.models").joinpath("data/astronaut.jpg").read_bytes()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def portrait(size: int = 220) -> np.ndarray:
    """The astronaut's head and shoulders, square, `size` px."""
    return cv2.resize(astronaut()[20:300, 90:370], (size, size), interpolation=cv2.INTER_AREA)


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.stack([80 + 60 * np.sin(xx / 37.0), 90 + 50 * np.cos(yy / 23.0), 110 + 40 * np.sin((xx + yy) / 51.0)], -1)
    bg += rng.normal(0, 6, bg.shape)
    return np.clip(bg, 0, 255).astype(np.uint8)


def moving_faces(n: int, width: int = 640, height: int = 360, size: int = 220, faces: int = 1,
                 angle: float = 8.0) -> Iterator[np.ndarray]:
    """RGB frames with `faces` astronaut heads drifting, scaling and turning slightly."""
    bg = background(width, height)
    head = portrait(size)
    for i in range(n):
        img = bg.copy()
        t = i / max(n - 1, 1)
        for f in range(faces):
            s = 1.0 + 0.1 * math.sin(2 * math.pi * t + f)
            a = angle * math.sin(2 * math.pi * t + f)
            cx = width * (f + 1) / (faces + 1) + 20 * math.sin(2 * math.pi * t)
            cy = height / 2 + 10 * math.cos(2 * math.pi * t)
            m = cv2.getRotationMatrix2D((size / 2, size / 2), a, s)
            m[:, 2] += [cx - size / 2, cy - size / 2]
            mask = cv2.warpAffine(np.full((size, size), 255, np.uint8), m, (width, height))
            warped = cv2.warpAffine(head, m, (width, height))
            img[mask > 0] = warped[mask > 0]
        yield img


def write_clip(path: str, frames, fps: int = 25, codec: str = "libx264", pix_fmt: str = "yuv420p",
               audio: bool = True, metadata: dict | None = None, options: dict | None = None) -> str:
    """Encode RGB frames (and a 440 Hz tone as AAC) with PyAV."""
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    n = 0
    # phones keep make/model in QuickTime keys, which FFmpeg's mp4 muxer writes only when told to
    mov = str(path).lower().endswith((".mp4", ".mov", ".m4v"))
    with av.open(str(path), "w", options={"movflags": "use_metadata_tags"} if metadata and mov else {}) as out:
        if metadata:
            out.metadata.update(metadata)
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if options:
            vs.options = options
        astream = None
        if audio:  # every stream must exist before the first packet is muxed
            astream = out.add_stream("aac", rate=48000)
            astream.layout = "mono"
        for img in itertools.chain([first], frames):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            vf.pts, vf.time_base = n, Fraction(1, fps)
            n += 1
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if astream is not None:
            samples = int(48000 * n / fps)
            tone = (0.2 * np.sin(2 * np.pi * TONE_HZ * np.arange(samples) / 48000)).astype(np.float32)
            for k in range(0, samples, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = 48000, k, Fraction(1, 48000)
                for p in astream.encode(af):
                    out.mux(p)
            for p in astream.encode(None):
                out.mux(p)
    return str(path)


def read_frames(path, fmt: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format=fmt) for f in c.decode(video=0)]


def read_planes(path) -> list[list[np.ndarray]]:
    """Every frame's raw planes (no colour conversion)."""
    from ideud.stream.decode import planes_of

    with av.open(str(path)) as c:
        return [planes_of(f) for f in c.decode(video=0)]


def frame_pts(path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def with_subtitles(clip, dst, text: str = "Hello Alice") -> Path:
    """`clip`'s video with a SubRip track saying `text` for its first second, as Matroska at `dst`."""
    dst = Path(dst)
    srt = dst.with_suffix(".srt")
    srt.write_text(f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n")
    with av.open(str(clip)) as v, av.open(str(srt)) as s, av.open(str(dst), "w") as out:
        vs, ss = out.add_stream_from_template(v.streams.video[0]), out.add_stream_from_template(s.streams[0])
        for stream, packets in ((vs, v.demux(v.streams.video[0])), (ss, s.demux(s.streams[0]))):
            for p in packets:
                if p.dts is not None:
                    p.stream = stream
                    out.mux(p)
    return dst


def with_audio_codec(clip, dst, codec: str):
    """`clip`'s video (packets copied) and its first audio stream encoded again as `codec`, at `dst`."""
    with av.open(str(clip)) as i, av.open(str(dst), "w") as o:
        vs = o.add_stream_from_template(i.streams.video[0])
        src = i.streams.audio[0].codec_context
        a = o.add_stream(codec, rate=48000 if codec == "libopus" else src.sample_rate)
        a.layout = src.layout.name
        size = a.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=a.codec_context.codec.audio_formats[0].name, layout=a.layout,
                                      rate=a.codec_context.sample_rate, frame_size=size)
        for p in i.demux(i.streams.video[0], i.streams.audio[0]):
            if p.dts is None:
                continue
            if p.stream.type == "video":
                p.stream = vs
                o.mux(p)
                continue
            for f in p.decode():
                for g in resampler.resample(f):
                    o.mux(a.encode(g))
        for g in resampler.resample(None):
            o.mux(a.encode(g))
        o.mux(a.encode(None))
    return Path(dst)


def subtitle_text(path) -> tuple[int, bytes]:
    """(how many subtitle streams `path` has, their packets' bytes joined)."""
    with av.open(str(path)) as c:
        subs = [st for st in c.streams if st.type == "subtitle"]
        return len(subs), (b"".join(bytes(pk) for pk in c.demux(*subs) if pk.size) if subs else b"")



def audio_of(path) -> tuple[np.ndarray, int, float]:
    """`path`'s first audio stream decoded as mono float, its sample rate and its first frame's time;
    empty (rate 0) when it has none."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return np.zeros(0), 0, 0.0
        rate = c.streams.audio[0].codec_context.sample_rate
        frames = list(c.decode(audio=0))
    chunks = [f.to_ndarray().astype(np.float64).reshape(f.to_ndarray().shape[0], -1).mean(0) for f in frames]
    start = float(frames[0].pts * frames[0].time_base) if frames else 0.0
    return (np.concatenate(chunks) if chunks else np.zeros(0)), rate, start


def loudest_hz(sound: np.ndarray, rate: int) -> float:
    """The frequency that carries most of `sound` (windowed spectrum)."""
    spectrum = np.abs(np.fft.rfft(sound * np.hanning(sound.size)))
    return float(np.fft.rfftfreq(sound.size, 1 / rate)[int(np.argmax(spectrum))])


def as_mpegts(clip) -> bytes:
    """`clip`'s video and first audio stream as MPEG-TS (what a pipe or a recorder carries), packets copied."""
    ts = io.BytesIO()
    with av.open(str(clip)) as i, av.open(ts, "w", format="mpegts") as o:
        out = {s.index: o.add_stream_from_template(s) for s in (i.streams.video[0], i.streams.audio[0])}
        for p in i.demux():
            if p.dts is not None:
                p.stream = out[p.stream.index]
                o.mux(p)
    return ts.getvalue()


def encoded(dst, n: int, width: int, height: int, codec: str = "libx264", pix_fmt: str = "yuv420p",
            fmt: str | None = None, options: dict | None = None, context: dict | None = None, size: int = 100):
    """`n` frames of a moving face as a video of `codec` in `pix_fmt` (no audio) at `dst` (a path or a
    writable buffer; `fmt`: the container when a buffer or a raw stream), with encoder `options` and
    codec-context attributes `context` (colour description, aspect ratio); returns `dst`."""
    with av.open(dst if not isinstance(dst, Path) else str(dst), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=25, options=options or {})
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        for name, value in (context or {}).items():
            setattr(s.codec_context, name, value)
        for rgb in moving_faces(n, width, height, size=size):
            for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return dst
