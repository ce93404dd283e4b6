"""Decode: PyAV demux + threaded decoding into `Frame` records.

Keeps what the encoder needs to give back an equivalent stream: size, frame
rate, time base, every frame's pts, rotation side data, colour range and
matrix. Audio packets are passed through untouched, in demux order, so the
encoder can copy them without re-encoding.
"""
from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator, Optional, Union

import av
import cv2
import numpy as np

from ideud.stream import deep, still_depth, still_formats
from ideud.stream.errors import InputError
from ideud.stream.still_formats import PILLOW_STILLS
from ideud.stream.types import Frame

# Planar 8-bit YUV formats we process natively; anything else is converted once.
WORK_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", *PILLOW_STILLS}
ISO_MEDIA = {".mp4", ".m4v", ".mov", ".3gp", ".m4a"}  # files whose index is a top-level box (moov)

log = logging.getLogger("ideud")


@dataclass
class VideoInfo:
    width: int
    height: int
    rate: Optional[Fraction]
    time_base: Optional[Fraction]
    frames: int  # 0 when the container does not say
    rotation: int
    codec: str
    pix_fmt: str
    # input streams copied packet by packet: audio, and with --keep-metadata subtitles and data (a
    # camera's GPS track, timecode)
    audio: list = field(default_factory=list)
    container_metadata: dict = field(default_factory=dict)
    stream_metadata: dict = field(default_factory=dict)
    chapters: list = field(default_factory=list)  # their titles are metadata: written with --keep-metadata only
    duration: Optional[float] = None
    work_fmt: str = "yuv420p"  # pixel format of Frame.planes
    colour: tuple = (2, 2, 2, 0)  # the first frame's colour description (Frame.colour), for the encoder
    sar: Optional[Fraction] = None  # pixel aspect ratio where not square (Frame.sar)
    field_order: int = 0  # Frame.field_order
    hdr10: Optional[str] = None  # Frame.hdr10

    def take_picture_of(self, first: "Frame") -> "VideoInfo":
        """How the first frame to be written is to be shown (rotation, working format, colours,
        pixel shape, fields), for the encoder: the sinks open on it. Returns self."""
        self.rotation, self.work_fmt = first.rotation, first.pix_fmt
        self.colour, self.sar, self.field_order, self.hdr10 = first.colour, first.sar, first.field_order, first.hdr10
        return self


@dataclass
class AudioPacket:
    packet: "av.Packet"
    stream_index: int  # index into VideoInfo.audio (the copied streams, subtitles and data included)


@dataclass
class ImageFrame(Frame):
    """A still image: RGB planes plus what the writer gives back untouched (alpha, colour profile)."""

    alpha: Optional[np.ndarray] = None  # (H, W) uint8, for PNG/WebP/TIFF with transparency
    alpha16: Optional[np.ndarray] = None  # (H, W) uint16: a 16-bit source's own alpha
    icc_profile: Optional[bytes] = None  # the embedded colour profile
    grey: bool = False  # a one-channel source, written grey again (stream/still_depth.py)
    source16: Optional[np.ndarray] = None  # a 16-bit source's samples (BGR or grey), kept outside `touched`


Item = Union[Frame, AudioPacket]


def iso_media_damage(path: str) -> Optional[str]:
    """Why an MP4/MOV file looks cut off (a top-level box running past the end, no index), or None.

    Reads only the box headers: a recording stopped mid-write ends inside `mdat`, and when the
    index (`moov`) is written last it is not there at all."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            at, seen = 0, set()
            while at + 8 <= size:
                f.seek(at)
                n, kind = struct.unpack(">I4s", f.read(8))
                if n == 1:  # 64-bit size follows
                    n = struct.unpack(">Q", f.read(8))[0]
                elif n == 0:  # box runs to the end of the file
                    n = size - at
                if n < 8 or (not seen and kind != b"ftyp"):
                    return None  # not an ISO media file we can judge
                seen.add(kind)
                if at + n > size:
                    what = "the index (moov) is missing, " if b"moov" not in seen else ""
                    return f"{what}{kind.decode('latin-1')} ends {at + n - size} bytes past the end of the file"
                at += n
            if b"ftyp" in seen and b"moov" not in seen:
                return "it has no index (moov)"
    except (OSError, struct.error):
        return None
    return None


def _open_error(url: str) -> str:
    """The one-line reason a file FFmpeg rejects could not be read."""
    if os.path.splitext(url)[1].lower() in ISO_MEDIA and os.path.isfile(url):
        damage = iso_media_damage(url)
        if damage:
            return f"{url}: looks truncated ({damage}); was the recording or copy cut off?"
    return f"{url}: not a video file FFmpeg can read"


def is_image(path: str) -> bool:
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def _matrix(frame: "av.VideoFrame") -> str:
    cs = int(frame.colorspace or 2)
    if cs == 1:
        return "bt709"
    if cs in (5, 6):
        return "bt601"
    if cs in (9, 10):
        return "bt2020"
    return "bt709" if frame.height >= 720 else "bt601"  # unspecified: FFmpeg's usual guess


def looks_short(decoded: int, declared: Optional[int]) -> bool:
    """Fewer frames than the container declared by more than one and 2 % (a cut-off file): a count one
    off is common (FFmpeg's AVI muxer declares 41 frames for the 40 it writes where there is sound)."""
    return bool(declared) and decoded < min(0.98 * declared, declared - 1)


def frame_step(rate: Optional[Fraction], time_base: Optional[Fraction]) -> int:
    """One frame's duration in `time_base` ticks at `rate` (1 where either is unknown)."""
    return max(1, round(1 / (rate * time_base))) if rate and time_base else 1


def _work_format(fmt: "av.VideoFormat") -> str:
    name = fmt.name
    if name in WORK_FORMATS:
        return name
    # keep full chroma resolution when the source has it
    comps = fmt.components
    full_chroma = len(comps) >= 3 and comps[1].width == comps[0].width and comps[1].height == comps[0].height
    return "yuv444p" if full_chroma else "yuv420p"


def planes_of(frame: "av.VideoFrame") -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy() for p in frame.planes]


def _first_video_stream(container) -> "av.video.stream.VideoStream":
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:  # cover images are not the video
            return s
    raise InputError("no video stream")


class VideoSource:
    """A video file or URL, read as a sequence of Frame / AudioPacket items."""

    def __init__(self, url: str, options: Optional[dict] = None, timeout: Optional[float] = None,
                 detect_size: Optional[Callable[[int, int], tuple[int, int]]] = None, audio: bool = True,
                 fmt: Optional[str] = None, other: bool = False):
        self.url = url
        try:
            self.container = av.open(url, mode="r", options=options or {}, timeout=timeout, format=fmt)
        except av.error.FileNotFoundError:
            raise InputError(f"{url}: no such file") from None
        except (av.error.InvalidDataError, av.error.EOFError):
            raise InputError(_open_error(url)) from None
        except av.error.FFmpegError as e:
            raise InputError(f"{url}: cannot open ({e.strerror or type(e).__name__})") from None
        try:
            self.stream = _first_video_stream(self.container)
        except InputError:
            self.container.close()
            raise InputError(f"{url}: has no video stream") from None
        if self.stream.codec_context is None or self.stream.codec_context.width == 0:
            self.container.close()
            raise InputError(f"{url}: video stream has an unsupported codec or no frames")
        self.stream.thread_type = "AUTO"
        others = [s for s in self.container.streams.video
                  if s is not self.stream and not s.disposition & av.stream.Disposition.attached_pic]
        if others:  # never copied (they show faces too): said, not silently lost
            log.warning("%s: %d more video stream(s) (another camera or angle) not written: only the first "
                        "video stream is de-identified", url, len(others))
        cc = self.stream.codec_context
        self.audio_streams = list(self.container.streams.audio) if audio else []
        # `other` (--keep-metadata): subtitle and data streams are copied too, like audio
        self.other_streams = [s for s in self.container.streams if s.type in ("subtitle", "data")] if other else []
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        duration = None
        if self.container.duration:
            duration = self.container.duration / av.time_base
        sar = cc.sample_aspect_ratio or self.stream.sample_aspect_ratio
        self.info = VideoInfo(
            width=cc.width, height=cc.height, rate=Fraction(rate) if rate else None,
            time_base=self.stream.time_base, frames=int(self.stream.frames or 0),
            rotation=0, codec=cc.name, pix_fmt=cc.pix_fmt or "", audio=self.audio_streams + self.other_streams,
            container_metadata=dict(self.container.metadata), stream_metadata=dict(self.stream.metadata),
            chapters=self._chapters(), duration=duration,
            work_fmt=_work_format(av.VideoFormat(cc.pix_fmt)) if cc.pix_fmt else "yuv420p",
            sar=Fraction(sar) if sar and sar > 0 and sar != 1 else None, field_order=int(cc.field_order or 0),
        )
        self.detect_size = detect_size
        self.lost_packets = 0  # packets the decoder rejected (corrupt data)
        self.errors: list[str] = []
        self.decoded = 0  # frames decoded so far
        self._last_pts: Optional[int] = None  # (to number the frames of a stream without timestamps)
        self._hdr10: Optional[tuple] = None  # (the first deep frame's HDR10 data,): static, read once

    def _chapters(self) -> list:
        try:
            return list(self.container.chapters())
        except (AttributeError, av.error.FFmpegError):  # a PyAV without chapters
            return []

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def to_frame(self, f: "av.VideoFrame", index: int) -> Frame:
        """One decoded PyAV frame as our Frame record (planes in the working format)."""
        fmt = _work_format(f.format)
        colour = (int(f.color_primaries or 2), int(f.color_trc or 2), int(f.colorspace or 2), int(f.color_range or 0))
        both = deep.split(f, fmt)  # a source of more than 8 bits: its 10-bit planes kept too
        if both is None and fmt != f.format.name:
            f = f.reformat(format=fmt)
        full = fmt.startswith("yuvj") or int(f.color_range or 0) == 2
        tb = f.time_base or self.stream.time_base
        pts = f.pts if f.pts is not None else f.dts
        if pts is None and tb and self.info.rate:
            # a raw H.264/HEVC stream (a camera's .h264 file) has no timestamps: one frame's duration
            # after the last (else the encoder numbers the frames 1, 2, 3 ticks apart: a video of microseconds)
            pts = 0 if self._last_pts is None else self._last_pts + frame_step(self.info.rate, tb)
        self._last_pts = pts if pts is not None else self._last_pts
        fr = Frame(index=index, pts=pts, time_base=tb, planes=planes_of(f) if both is None else both[0], pix_fmt=fmt,
                   full_range=full, matrix=_matrix(f), rotation=int(f.rotation or 0), colour=colour, sar=self.info.sar,
                   field_order=self.info.field_order,
                   time=float(pts * tb) if pts is not None and tb else index / float(self.info.rate or 25),
                   deep=None if both is None else both[1], hdr10=None if both is None else self._hdr10_of(f))
        if self.detect_size is not None:
            dw, dh = self.detect_size(f.width, f.height)
            fr.small = f.reformat(width=dw, height=dh, format="rgb24").to_ndarray()
            fr.small_scale = (f.width / dw, f.height / dh)
        return fr

    def _hdr10_of(self, f: "av.VideoFrame") -> Optional[str]:
        if self._hdr10 is None:  # (static metadata: not parsed again from every frame's side data)
            self._hdr10 = (deep.hdr10_params(f),)
        return self._hdr10[0]

    def items(self) -> Iterator[Item]:
        """Frames and audio packets in demux order; corrupt packets are skipped and counted. At the
        end, fewer frames than the container declared is reported (`errors`, a warning)."""
        for item in self._items():
            if isinstance(item, Frame):
                self.decoded += 1
            yield item
        self._check_count()

    def _check_count(self) -> None:
        declared = self.info.frames
        short = looks_short(self.decoded, declared)
        if declared and self.decoded < declared and (self.errors or self.lost_packets or short):
            note = (f"decoded {self.decoded} of {declared} declared frames: the input looks truncated"
                    if short else
                    f"decoded {self.decoded} of {declared} declared frames")
            self.errors.append(note)
            log.warning("%s: %s", self.url, note)

    def _items(self) -> Iterator[Item]:
        index = 0
        copied = self.audio_streams + self.other_streams
        audio_index = {s.index: i for i, s in enumerate(copied)}
        streams = [self.stream, *copied]
        demux = self.container.demux(*streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError as e:
                # a broken container mid-file: keep what was decodable
                self.errors.append(f"demux stopped at frame {index}: {e.strerror or type(e).__name__}")
                self.lost_packets += 1
                for f in self._flush():
                    yield self.to_frame(f, index)
                    index += 1
                return
            if packet.stream.index in audio_index:
                if packet.dts is not None and packet.size:
                    yield AudioPacket(packet, audio_index[packet.stream.index])
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                self.lost_packets += 1
                continue
            for f in frames:
                yield self.to_frame(f, index)
                index += 1

    def _flush(self):
        try:
            return self.stream.codec_context.decode(None)
        except av.error.FFmpegError:
            return []


def read_image(path: str) -> ImageFrame:
    """A still image as a one-frame RGB ImageFrame, with its alpha channel and colour profile (and,
    for stream/still_depth.py, whether it is grey and a 16-bit source's own samples)."""
    data = np.fromfile(path, np.uint8) if os.path.exists(path) else None
    if data is None:
        raise InputError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext in PILLOW_STILLS and data.size:  # HEIC/HEIF, AVIF: by Pillow (stream/still_formats.py)
        rgb, alpha = still_formats.read(path, ext)
        grey, source16, alpha16 = False, None, None
    else:
        got = still_depth.read(data) if data.size else None  # turned upright by EXIF Orientation
        if got is None:
            raise InputError(f"{path}: not an image file OpenCV can read")
        rgb, grey, source16 = got
        alpha, alpha16 = _alpha_of(data, rgb.shape[:2])
    return ImageFrame(index=0, pts=0, time_base=Fraction(1, 1),
                      planes=[np.ascontiguousarray(rgb[..., i]) for i in range(3)], pix_fmt="rgb", full_range=True,
                      alpha=alpha, alpha16=alpha16, icc_profile=image_icc_profile(path), grey=grey, source16=source16)


def _alpha_of(data: np.ndarray, shape: tuple) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(alpha as uint8, the source's 16-bit alpha or None); (None, None) without one."""
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 3 or raw.shape[2] != 4 or raw.shape[:2] != tuple(shape):
        return None, None  # no alpha (or turned by EXIF Orientation, which alpha images do not carry)
    alpha = np.ascontiguousarray(raw[:, :, 3])
    if alpha.dtype == np.uint16:
        return still_depth.to_8_bit(alpha), alpha
    return (alpha, None) if alpha.dtype == np.uint8 else (None, None)


def image_icc_profile(path: str) -> Optional[bytes]:
    """The embedded ICC colour profile, or None. It describes the camera's or editor's colours,
    not a person, so it is kept in every mode."""
    try:
        from PIL import Image  # pillow comes with matplotlib
    except ImportError:
        return None
    try:
        with Image.open(path) as im:
            return im.info.get("icc_profile") or None
    except Exception:
        return None


def attach_small(frame: Frame, detect_size: Callable[[int, int], tuple[int, int]]) -> None:
    """Give a still-image frame its detector copy where it has none (videos get it from swscale)."""
    if frame.small is not None or not frame.is_rgb:
        return
    dw, dh = detect_size(frame.width, frame.height)
    rgb = np.dstack(frame.planes)
    frame.small = cv2.resize(rgb, (dw, dh), interpolation=cv2.INTER_AREA) if (dw, dh) != (frame.width, frame.height) else rgb
    frame.small_scale = (frame.width / dw, frame.height / dh)
