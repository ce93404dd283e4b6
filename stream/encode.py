"""Encode: PyAV mux of the processed frames, audio copied without re-encoding.

The output is written to a temporary file beside the destination and renamed
into place only when complete, so a crash never leaves a half-written file
under the output name. Identifying metadata of the input (container and
stream tags: GPS/location, make/model, author, creation time; cover images;
data/subtitle streams) is not carried over unless `keep_metadata`. Still images
are written by stream/image_out.py.
"""
from __future__ import annotations

import io
import logging
import os
import re
import socket
import uuid
from typing import Optional

import av
import cv2
import numpy as np

from ideud.stream import deep, heap_fill
from ideud.stream.audio_transcode import output_stream
from ideud.stream.decode import AudioPacket, VideoInfo, frame_step, is_image
from ideud.stream.errors import OutputError, UsageError
from ideud.stream.timestamps import Continuous
from ideud.stream.types import Frame

log = logging.getLogger("ideud")

_COLORSPACE = {"bt709": 1, "bt601": 6, "bt2020": 9}  # Frame.matrix -> FFmpeg's AVColorSpace
# Frame.colour's fields on a codec context, with FFmpeg's value for "unspecified"
_COLOUR_FIELDS = (("color_primaries", 2), ("color_trc", 2), ("colorspace", 2), ("color_range", 0))

# tags that say nothing about who or where; kept even without --keep-metadata
SAFE_STREAM_TAGS = {"language"}


# --codec auto: H.264 wherever the container takes it, else the container's own (.webm holds only
# VP8, VP9 and AV1; .gif only GIF; Ogg takes H.264 and then fails at the first packets: VP8)
AUTO_CODECS = {".webm": "libvpx-vp9", "webm": "libvpx-vp9", ".gif": "gif", "gif": "gif",
               ".ogv": "libvpx", ".ogg": "libvpx", "ogg": "libvpx"}
# CRF scale of the encoders we pass --crf to (8-bit output): FFmpeg accepts any number and
# the encoder clamps it (999 gives a blocky video) or fails at the first frame (-5)
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63)}
# without --crf: H.264's 18 looks lossless; VP9's 24 (real-time mode) gave 40.9 dB against H.264's
# 41.2 on the same 360p frames, with 1.4x the bytes
DEFAULT_CRF = {"libx264": 18, "libx265": 18, "libvpx-vp9": 24}
# libvpx's own defaults took 15 ms a 360p frame here, H.264 veryfast 2.5: its real-time mode ~4 ms
CODEC_DEFAULTS = {"libvpx-vp9": {"deadline": "realtime", "cpu-used": "6", "row-mt": "1", "b": "0"},
                  "libx265": {"x265-params": "log-level=error"},  # not its 25 lines of settings on stderr
                  "libvpx": {"deadline": "realtime", "cpu-used": "6", "crf": "10", "b": "2M"}}  # VP8: crf under a cap
# encoders that keep a 4:2:2 or 4:4:4 source's chroma (lossless); the others write 4:2:0
KEEPS_CHROMA = {"ffv1"}
# what a container is offered in the message when it cannot hold the codec asked for
CODEC_CHOICES = ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "ffv1", "mpeg4", "gif")
# containers by extension, to tell a codec they cannot hold before any work (others: when opened)
FORMAT_OF_EXT = {".mp4": "mp4", ".m4v": "mp4", ".m4a": "ipod", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                 ".avi": "avi", ".gif": "gif", ".ts": "mpegts", ".flv": "flv", ".f4v": "f4v", ".3gp": "3gp",
                 ".ismv": "ismv", ".ogv": "ogg", ".ogg": "ogg"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
# muxers that write only the tags they know unless told to write all (make/model are not among them)
ALL_TAGS_FORMATS = {".mp4": "use_metadata_tags", ".m4v": "use_metadata_tags", ".mov": "use_metadata_tags"}


_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"  # in temp names, with the pid


def temp_path_for(dst: str) -> str:
    """A unique hidden temp name in the destination's folder, same extension, with our pid in it
    so that the next run can tell the leftovers of a killed process (`remove_stale_temps`)."""
    remove_stale_temps(dst)
    folder, name = os.path.split(os.path.abspath(dst))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.part{ext}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(dst: str) -> list[str]:
    """Delete temp files of `dst` left by processes of this machine that no longer run (killed runs);
    another machine's (a shared folder) are left alone: their liveness cannot be seen from here."""
    folder, name = os.path.split(os.path.abspath(dst))
    stem, ext = os.path.splitext(name)
    pattern = re.compile(rf"\.{re.escape(stem)}\.{re.escape(_HOST)}-(\d+)-[0-9a-f]+\.part{re.escape(ext)}")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for entry in names:
        m = pattern.fullmatch(entry)
        if m and int(m.group(1)) != os.getpid() and not _process_alive(int(m.group(1))):
            try:
                os.remove(os.path.join(folder, entry))
                removed.append(entry)
            except OSError:
                pass  # not ours to remove after all (permissions): leave it
    if removed:
        log.info("%s: removed %d temp file(s) of an interrupted earlier run", dst, len(removed))
    return removed


def set_chapters(container, chapters: list) -> None:
    """The input's chapters, titles and all (--keep-metadata), where the container holds chapters."""
    if chapters and hasattr(container, "set_chapters"):
        container.set_chapters(chapters)


def safe_tags(tags: dict) -> dict:
    """The tags kept without --keep-metadata (they identify nobody)."""
    return {k: v for k, v in tags.items() if k.lower() in SAFE_STREAM_TAGS}


def metadata_container_options(dst: str, keep_metadata: bool) -> dict:
    """Muxer options that keep every tag where the muxer would drop some (mp4/mov: make, model)."""
    flag = ALL_TAGS_FORMATS.get(os.path.splitext(dst)[1].lower())
    return {"movflags": f"+{flag}"} if keep_metadata and flag else {}


def codec_for(codec: str, dst: str, fmt: Optional[str] = None) -> str:
    """The encoder a run uses: `codec`, or for "auto" the one the output's container takes."""
    if codec != "auto":
        return codec
    return AUTO_CODECS.get(fmt or os.path.splitext(dst)[1].lower(), "libx264")


def check_encoder_options(codec: str, crf: Optional[int], preset: Optional[str]) -> None:
    """UsageError unless `codec` is a video encoder here and crf/preset are in its range ("auto":
    checked once the output's container has chosen, VideoSink)."""
    if codec == "auto":
        if crf is not None and not 0 <= crf <= max(hi for _, hi in CRF_RANGE.values()):
            raise UsageError(f"--crf {crf}: out of range (H.264 takes 0-51, VP9 0-63; lower is better)")
        if preset and preset not in PRESETS:
            raise UsageError(f"--preset {preset}: libx264 takes one of {', '.join(PRESETS)}")
        return
    try:
        c = av.Codec(codec, "w")
    except Exception:
        raise UsageError(f"--codec {codec}: not a video encoder in this FFmpeg (e.g. libx264, libx265, ffv1)") from None
    if c.type != "video":
        raise UsageError(f"--codec {codec}: is an {c.type} encoder, not a video one")
    if codec in CRF_RANGE and crf is not None:
        lo, hi = CRF_RANGE[codec]
        if not lo <= crf <= hi:
            raise UsageError(f"--crf {crf}: {codec} takes {lo}-{hi} (lower is better; 18 looks lossless, 28 is small)")
    if codec in CRF_RANGE and preset and preset not in PRESETS:
        raise UsageError(f"--preset {preset}: {codec} takes one of {', '.join(PRESETS)}")


def check_output_path(dst: str, video_input: bool, codec: Optional[str] = None) -> None:
    """Usage errors about the output file, found before any work: a video written to an image
    extension, a container that cannot hold `codec`, a folder that does not exist or cannot be
    written (tried, not guessed: root passes every permission check but not a read-only filesystem)."""
    if dst == "-" or "://" in dst:
        return
    ext = os.path.splitext(dst)[1].lower()
    if video_input and is_image(dst):
        raise UsageError(f"{dst}: the input is a video, so the output must be a video file (.mp4, .mkv, .mov), "
                         f"not an image ({ext})")
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise UsageError(f"{dst}: folder {folder} does not exist")
    probe = os.path.join(folder, f".ideud-write-test.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"{dst}: folder {folder} is not writable ({e.strerror or e})") from None
    fmt = FORMAT_OF_EXT.get(ext) or _format_of(probe + ext) if video_input and codec else None
    if fmt and not _takes(fmt, codec_for(codec, dst)):
        raise UsageError(cannot_hold(dst, codec_for(codec, dst), fmt, codec == "auto"))


def _codec_pix_fmt(codec: "av.Codec", wanted: str) -> str:
    fmts = [f.name for f in (codec.video_formats or [])]
    if codec.name not in KEEPS_CHROMA and wanted.endswith(("422p", "444p")):
        # a lossy encoder writes 4:2:0: H.264 in 4:2:2 or 4:4:4 (an MJPEG camera, a pro camera's
        # 4:2:2) plays in few players (no browser, no QuickTime); --codec ffv1 keeps the source's
        wanted = wanted[:-4] + "420p"
    if not fmts or wanted in fmts:
        return wanted
    # yuvj* is the full-range spelling of yuv*: the range is flagged on the frames instead
    plain = wanted.replace("yuvj", "yuv")
    if plain in fmts:
        return plain
    return "yuv420p" if "yuv420p" in fmts else fmts[0]


def _format_of(path: str) -> Optional[str]:
    """The muxer FFmpeg picks for this file name (the file is made and removed), or None."""
    try:
        with av.open(path, "w") as c:
            return c.format.name
    except Exception:
        return None
    finally:
        try:
            os.remove(path)
        except OSError:
            pass


def _takes(fmt: str, codec: str) -> bool:
    """Whether a container of this format can hold this encoder's video (tried in memory)."""
    try:
        av.Codec(codec, "w")
        with av.open(io.BytesIO(), "w", format=fmt) as c:
            c.add_stream(codec, rate=25)
        return True
    except Exception:
        return False


def cannot_hold(dst: str, codec: str, fmt: str, auto: bool = False) -> str:
    ext = os.path.splitext(dst)[1] or fmt
    fits = [c for c in CODEC_CHOICES if _takes(fmt, c)]
    if not fits:
        return f"{dst}: no video encoder here writes {ext} files; use .mp4, .mkv or .webm"
    return (f"{dst}: a {ext} file cannot hold {codec} video" + (" (what --codec auto gives it)" if auto else "")
            + ("; use --codec " if auto else "; leave --codec at auto or use one of ") + ", ".join(fits))


class VideoSink:
    """Writes frames (and copied audio packets) to `dst` via a temp file."""

    def __init__(self, dst: str, info: VideoInfo, codec: str = "auto", crf: Optional[int] = None,
                 preset: Optional[str] = "veryfast", keep_metadata: bool = False, audio: bool = True,
                 fmt: Optional[str] = None, container_options: Optional[dict] = None,
                 codec_options: Optional[dict] = None, temp: bool = True, fill_heap: bool = False,
                 hdr_auto: bool = False):
        # reproducible bytes: new heap blocks filled while this file is encoded (stream/heap_fill.py)
        self._heap = heap_fill.hold() if fill_heap else False
        self.dst = dst
        if is_image(dst) and fmt is None:
            self._release_heap()
            raise UsageError(f"{dst}: a video cannot be written as an image; use .mp4, .mkv or .mov")
        self.path = temp_path_for(dst) if temp else dst
        self.info = info
        container_options = dict(container_options or {})
        if fmt is None:  # make/model are not among the mp4 muxer's own tags
            for k, v in metadata_container_options(dst, keep_metadata).items():
                container_options[k] = container_options.get(k, "") + v
        try:
            self.container = av.open(self.path, mode="w", format=fmt, options=container_options)
        except av.error.FFmpegError as e:
            self._discard()
            raise OutputError(f"{dst}: cannot write ({e.strerror or type(e).__name__})") from None
        except (OSError, ValueError) as e:
            self._discard()
            raise OutputError(f"{dst}: cannot write ({e})") from None
        self.codec_name, self._auto = codec_for(codec, dst, fmt), codec == "auto"
        if hdr_auto and self._auto:  # (a file run: an HDR source of more than 8 bits as 10-bit HEVC)
            self.codec_name = deep.auto_codec(self.codec_name, dst, info.pix_fmt, info.colour[1])
        try:
            self._setup(self.codec_name, crf, preset, keep_metadata, audio, codec_options or {})
        except Exception:
            self.abort()
            raise
        self.frames = 0
        self.resized_frames = 0  # frames of another size than the first, scaled to it
        # timestamps that go back in the source (joined recordings) continue instead (stream/timestamps.py)
        self.video_clock = Continuous()
        self._audio_clocks: dict[int, Continuous] = {}
        self._closed = False

    def _setup(self, codec_name, crf, preset, keep_metadata, audio, codec_options):
        info = self.info
        try:
            codec = av.Codec(codec_name, "w")
        except Exception:
            raise OutputError(f"unknown or unavailable video encoder {codec_name!r}") from None
        check_encoder_options(codec_name, crf, preset)
        try:
            vs = self.container.add_stream(codec_name, rate=info.rate or 25)
        except ValueError:  # FFmpeg's "'webm' format does not support 'libx264' codec"
            raise UsageError(cannot_hold(self.dst, codec_name, self.container.format.name, self._auto)) from None
        vs.width, vs.height = info.width, info.height
        vs.pix_fmt = _codec_pix_fmt(codec, info.work_fmt)
        # a source of more than 8 bits keeps them outside the faces where the encoder's 10 bits play (stream/deep.py)
        self.deep_fmt = deep.output_format(codec, vs.pix_fmt, info.pix_fmt)
        if self.deep_fmt:
            vs.pix_fmt = self.deep_fmt
        # the source's colour description in the stream's header: without it players guess (BT.601
        # for SD, limited range), and an HLG or PQ video's BT.2020 colours show washed out
        for (name, unspecified), value in zip(_COLOUR_FIELDS, info.colour):
            if value and value != unspecified:
                setattr(vs.codec_context, name, value)
        if info.sar:  # non-square pixels (anamorphic video): without it the picture shows squeezed
            vs.codec_context.sample_aspect_ratio = info.sar
        interlaced = info.field_order in (2, 3, 4, 5) and codec_name == "libx264"
        if interlaced:  # coded as fields again, as the source was: players deinterlace it (else it shows combed)
            vs.codec_context.field_order = info.field_order
        if info.time_base:
            vs.codec_context.time_base = info.time_base
            vs.time_base = info.time_base
        opts = dict(codec_options)
        crf = DEFAULT_CRF.get(codec_name) if crf is None else crf
        if codec_name in CRF_RANGE and crf is not None:
            opts.setdefault("crf", str(crf))
        if codec_name in ("libx264", "libx265") and preset:
            opts.setdefault("preset", preset)
        for k, v in CODEC_DEFAULTS.get(codec_name, {}).items():
            opts.setdefault(k, v)
        if self.deep_fmt and info.hdr10 and codec_name in deep.HDR10_PARAMS:  # how players tone-map the PQ picture
            key, value = deep.HDR10_PARAMS[codec_name], deep.hdr10_for(codec_name, info.hdr10)
            opts[key] = ":".join(p for p in (opts.get(key), value) if p)
        if codec_name == "libx265" and self.container.format.name.split(",")[0] in ("mov", "mp4"):
            vs.codec_tag = "hvc1"  # (FFmpeg's default hev1 is not played by QuickTime, iOS or Safari)
        if interlaced:
            opts["x264-params"] = ":".join(p for p in (opts.get("x264-params"), "interlaced=1",
                                                        "tff=1" if info.field_order in (2, 4) else "bff=1") if p)
        vs.options = opts
        if info.rotation:
            vs.set_display_rotation(info.rotation)
        if keep_metadata:
            self.container.metadata.update(info.container_metadata)
            set_chapters(self.container, info.chapters)
            vs.metadata.update(info.stream_metadata)
        else:
            vs.metadata.update(safe_tags(info.stream_metadata))
        self.video = vs
        self.audio_out = []  # one per copied input stream (AudioPacket.stream_index), None: not written
        self.transcoders: dict = {}  # AudioPacket.stream_index -> AudioTranscoder: audio this container cannot hold as it is
        dropped = []
        for s in info.audio:  # audio, and subtitles and data where the source was asked for them
            out = None
            if audio or s.type != "audio":
                out, tr = output_stream(self.container, s)
                if tr is not None:  # decoded and encoded once (AAC into .webm: Opus)
                    self.transcoders[len(self.audio_out)] = tr
                    log.info("%s: the input's %s audio cannot go into this container as it is (or few of its "
                             "players play it there); encoded as %s", self.dst, s.codec_context.name, tr.name)
                elif out is None:
                    dropped.append(s.type)  # this container cannot hold that codec: said in the report
                if out is not None:
                    out.metadata.clear()
                    out.metadata.update(dict(s.metadata) if keep_metadata else safe_tags(dict(s.metadata)))
            self.audio_out.append(out)
        self.dropped_audio_streams = dropped.count("audio")
        if self.dropped_audio_streams:
            log.warning("%s: the input's %d audio stream(s) cannot go into this container; written without",
                        self.dst, self.dropped_audio_streams)
        self.other_streams = {"copied": sum(1 for s, o in zip(info.audio, self.audio_out) if o is not None
                                            and s.type != "audio"),
                              "dropped": len(dropped) - dropped.count("audio")}
        if self.other_streams["dropped"]:
            log.warning("%s: %d subtitle or data stream(s) of the input cannot go into this container; not kept",
                        self.dst, self.other_streams["dropped"])

    def _av_frame(self, frame: Frame) -> "av.VideoFrame":
        fmt = frame.pix_fmt if frame.pix_fmt != "rgb" else "yuv444p"
        fmt10 = deep.deep_format(fmt) if self.deep_fmt else None
        planes, dtype = (deep.planes_to_write(frame), np.uint16) if fmt10 else (frame.planes, np.uint8)
        out = av.VideoFrame(frame.width, frame.height, fmt10 or fmt)
        for plane, data in zip(out.planes, planes):
            view = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype().itemsize)
            view[:, : plane.width] = data
        jumps = self.video_clock.jumps
        out.pts = self.video_clock(frame.pts, frame_step(self.info.rate, frame.time_base))
        if self.video_clock.jumps and not jumps:  # (the first jump back: said once)
            log.warning("%s: the video's timestamps go back at frame %d (joined recordings?); the rest follows "
                        "on from there", self.dst, frame.index)
        if frame.time_base is not None:
            out.time_base = frame.time_base
        out.color_range = 2 if frame.full_range else 1
        out.colorspace = _COLORSPACE.get(frame.matrix, 6)
        if out.format.name != self.video.pix_fmt:
            out = out.reformat(format=self.video.pix_fmt)
        return out

    def write(self, frame: Frame) -> None:
        if (frame.width, frame.height) != (self.info.width, self.info.height):
            # a source that changes size mid-stream (joined recordings, a camera reconfigured): one
            # video stream has one size, so the (de-identified) frame is scaled to the first one
            if not self.resized_frames:
                log.warning("%s: the video changes size at frame %d (%dx%d, then %dx%d); such frames are scaled "
                            "to the first size", self.dst, frame.index, self.info.width, self.info.height,
                            frame.width, frame.height)
            resize_planes(frame, self.info.width, self.info.height)
            frame.deep = None  # (written from the scaled 8-bit planes)
            self.resized_frames += 1
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
        tr = self.transcoders.get(item.stream_index)
        packets = tr.encode(item.packet) if tr is not None else [item.packet]
        clock = self._audio_clocks.setdefault(item.stream_index, Continuous(strict=False))
        for packet in packets:
            if packet.dts is not None:  # (pts moves with dts: the packet keeps its own delay)
                packet.dts = clock(packet.dts, packet.duration or 1)
                if packet.pts is not None:
                    packet.pts += clock.offset
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
            for tr in self.transcoders.values():
                for packet in tr.flush():
                    self.container.mux(packet)
            self.container.close()
        except (av.error.FFmpegError, OSError) as e:
            self.abort()
            msg = getattr(e, "strerror", None) or str(e)
            raise OutputError(f"{self.dst}: finishing the file failed ({msg})") from None
        self._closed = True
        self._release_heap()
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

    def _release_heap(self) -> None:
        if self._heap:
            self._heap = False
            heap_fill.release()

    def _discard(self):
        self._release_heap()
        if self.path != self.dst:
            try:
                os.remove(self.path)
            except OSError:
                pass


def resize_planes(frame: Frame, width: int, height: int) -> None:
    """The frame's planes scaled to width x height (chroma in proportion), in place."""
    sw, sh = frame.planes[1].shape[1] / frame.width, frame.planes[1].shape[0] / frame.height
    frame.planes = [frame.planes[0] if frame.planes[0].shape[:2] == (height, width) else
                    cv2.resize(frame.planes[0], (width, height), interpolation=cv2.INTER_AREA)] + [
        cv2.resize(p, (max(1, round(width * sw)), max(1, round(height * sh))), interpolation=cv2.INTER_AREA)
        for p in frame.planes[1:]]


def write_via_temp(dst: str, write) -> None:
    """`write(path)` to a temp file beside `dst`, then renamed onto it; a failure leaves neither."""
    tmp = temp_path_for(dst)
    try:
        write(tmp)
        os.replace(tmp, dst)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise OutputError(f"{dst}: cannot write ({e.strerror or e})") from None
