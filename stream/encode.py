"""Encode: PyAV mux of the processed frames, audio copied without re-encoding.

The output is written to a temporary file beside the destination and renamed
into place only when complete, so a crash never leaves a half-written file
under the output name. Identifying metadata of the input (container and
stream tags: GPS/location, make/model, author, creation time; cover images;
data/subtitle streams) is not carried over unless `keep_metadata`.
"""
from __future__ import annotations

import logging
import os
import uuid
import zlib
from typing import Optional

import av
import cv2
import numpy as np

from ideud.stream.decode import AudioPacket, VideoInfo
from ideud.stream.errors import OutputError
from ideud.stream.types import Frame

log = logging.getLogger("ideud")

# tags that say nothing about who or where; kept even without --keep-metadata
SAFE_STREAM_TAGS = {"language"}


def temp_path_for(dst: str) -> str:
    """A unique hidden temp name in the destination's folder, same extension."""
    folder, name = os.path.split(os.path.abspath(dst))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:12]}.part{ext}")


def _safe_tags(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if k.lower() in SAFE_STREAM_TAGS}


def _codec_pix_fmt(codec: "av.Codec", wanted: str) -> str:
    fmts = [f.name for f in (codec.video_formats or [])]
    if not fmts or wanted in fmts:
        return wanted
    # yuvj* is the full-range spelling of yuv*: the range is flagged on the frames instead
    plain = wanted.replace("yuvj", "yuv")
    if plain in fmts:
        return plain
    return "yuv420p" if "yuv420p" in fmts else fmts[0]


class VideoSink:
    """Writes frames (and copied audio packets) to `dst` via a temp file."""

    def __init__(self, dst: str, info: VideoInfo, codec: str = "libx264", crf: Optional[int] = 18,
                 preset: Optional[str] = "veryfast", keep_metadata: bool = False, audio: bool = True,
                 fmt: Optional[str] = None, container_options: Optional[dict] = None,
                 codec_options: Optional[dict] = None, temp: bool = True):
        self.dst = dst
        self.path = temp_path_for(dst) if temp else dst
        self.info = info
        try:
            self.container = av.open(self.path, mode="w", format=fmt, options=container_options or {})
        except av.error.FFmpegError as e:
            self._discard()
            raise OutputError(f"{dst}: cannot write ({e.strerror or type(e).__name__})") from None
        except (OSError, ValueError) as e:
            self._discard()
            raise OutputError(f"{dst}: cannot write ({e})") from None
        try:
            self._setup(codec, crf, preset, keep_metadata, audio, codec_options or {})
        except Exception:
            self.abort()
            raise
        self.frames = 0
        self._closed = False

    def _setup(self, codec_name, crf, preset, keep_metadata, audio, codec_options):
        info = self.info
        try:
            codec = av.Codec(codec_name, "w")
        except Exception:
            raise OutputError(f"unknown or unavailable video encoder {codec_name!r}") from None
        vs = self.container.add_stream(codec_name, rate=info.rate or 25)
        vs.width, vs.height = info.width, info.height
        vs.pix_fmt = _codec_pix_fmt(codec, info.work_fmt)
        if info.time_base:
            vs.codec_context.time_base = info.time_base
            vs.time_base = info.time_base
        opts = dict(codec_options)
        if codec_name in ("libx264", "libx265"):
            if crf is not None:
                opts.setdefault("crf", str(crf))
            if preset:
                opts.setdefault("preset", preset)
        vs.options = opts
        if info.rotation:
            vs.set_display_rotation(info.rotation)
        if keep_metadata:
            self.container.metadata.update(info.container_metadata)
            vs.metadata.update(info.stream_metadata)
        else:
            vs.metadata.update(_safe_tags(info.stream_metadata))
        self.video = vs
        self.audio_out = []
        if audio:
            for s in info.audio:
                try:
                    out = self.container.add_stream_from_template(s)
                except (ValueError, av.error.FFmpegError):
                    out = None  # this container cannot hold that codec: drop it, say so in the report
                if out is not None:
                    out.metadata.clear()
                    out.metadata.update(dict(s.metadata) if keep_metadata else _safe_tags(dict(s.metadata)))
                self.audio_out.append(out)
        self.dropped_audio_streams = sum(1 for s in self.audio_out if s is None)

    def _av_frame(self, frame: Frame) -> "av.VideoFrame":
        fmt = frame.pix_fmt if frame.pix_fmt != "rgb" else "yuv444p"
        out = av.VideoFrame(frame.width, frame.height, fmt)
        for plane, data in zip(out.planes, frame.planes):
            view = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            view[:, : plane.width] = data
        out.pts = frame.pts
        if frame.time_base is not None:
            out.time_base = frame.time_base
        out.color_range = 2 if frame.full_range else 1
        out.colorspace = 1 if frame.matrix == "bt709" else 6
        if out.format.name != self.video.pix_fmt:
            out = out.reformat(format=self.video.pix_fmt)
        return out

    def write(self, frame: Frame) -> None:
        try:
            for packet in self.video.encode(self._av_frame(frame)):
                self.container.mux(packet)
        except av.error.FFmpegError as e:
            raise OutputError(f"{self.dst}: encoding failed at frame {frame.index} ({e.strerror or type(e).__name__})") from None
        except OSError as e:
            raise OutputError(f"{self.dst}: write failed ({e.strerror or e})") from None
        self.frames += 1

    def write_audio(self, item: AudioPacket) -> None:
        out = self.audio_out[item.stream_index] if item.stream_index < len(self.audio_out) else None
        if out is None:
            return
        packet = item.packet
        packet.stream = out
        try:
            self.container.mux(packet)
        except av.error.FFmpegError:
            pass  # a packet the muxer refuses (bad timestamps) is lost; video is unaffected

    def close(self) -> None:
        """Flush, close, and move the finished file into place."""
        if self._closed:
            return
        try:
            for packet in self.video.encode(None):
                self.container.mux(packet)
            self.container.close()
        except (av.error.FFmpegError, OSError) as e:
            self.abort()
            msg = getattr(e, "strerror", None) or str(e)
            raise OutputError(f"{self.dst}: finishing the file failed ({msg})") from None
        self._closed = True
        if self.path != self.dst:
            os.replace(self.path, self.dst)

    def abort(self) -> None:
        """Drop the partial output (the destination name is never touched)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            self.container.close()
        except Exception:
            pass
        self._discard()

    def _discard(self):
        if self.path != self.dst:
            try:
                os.remove(self.path)
            except OSError:
                pass


def with_exif(data: bytes, ext: str, exif: bytes) -> Optional[bytes]:
    """The encoded JPEG/PNG `data` with an EXIF block added (None for other formats)."""
    if ext in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8":
        at = 2
        if data[2:4] == b"\xff\xe0":  # after the JFIF header, where readers expect APP1
            at = 4 + int.from_bytes(data[4:6], "big")
        if len(exif) + 2 > 0xFFFF:
            return None
        return data[:at] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + data[at:]
    if ext == ".png" and data[:8] == b"\x89PNG\r\n\x1a\n":
        tiff = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        chunk = b"eXIf" + tiff
        at = 8 + 12 + int.from_bytes(data[8:12], "big")  # after IHDR, before the image data
        return (data[:at] + len(tiff).to_bytes(4, "big") + chunk
                + (zlib.crc32(chunk) & 0xFFFFFFFF).to_bytes(4, "big") + data[at:])
    return None


def write_image(dst: str, frame: Frame, quality: int = 95, exif: Optional[bytes] = None) -> None:
    """Still image out, via a temp file. OpenCV writes no EXIF/GPS; `exif` (--keep-metadata) is
    added to JPEG and PNG files."""
    rgb = np.dstack(frame.planes)
    ext = os.path.splitext(dst)[1].lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, rgb[:, :, ::-1], params)
    if not ok:
        raise OutputError(f"{dst}: cannot encode an image with extension {ext!r}")
    data = buf.tobytes()
    if exif:
        kept = with_exif(data, ext, exif)
        if kept is None:
            log.warning("%s: metadata can be kept in JPEG and PNG outputs only; written without", dst)
        data = kept or data
    tmp = temp_path_for(dst)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise OutputError(f"{dst}: cannot write ({e.strerror or e})") from None
