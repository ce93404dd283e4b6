"""Audio a container cannot hold as it is: decoded and encoded once to a codec it holds.

Audio is copied packet for packet wherever the output's container takes its codec. Where it does
not (a phone's AAC into .webm or .ogv) it used to be dropped, with nothing said but a count in the
report. Now it is decoded and encoded to AAC where the container takes that, else Opus (WebM, Ogg),
at the source's channel layout, its timestamps carried over; a GIF holds no audio at all.
An MP4 takes more codecs than its players play: Opus, FLAC and PCM (FFmpeg writes it as `ipcm`) are
muxed without complaint, but QuickTime, iOS, Windows' player and most TVs play none of them there
(no sound, or the file refused), so into an MP4 only what every MP4 player plays is copied
(`PLAYED_IN`), anything else is encoded once as AAC. A MOV, MKV or WebM keeps what it holds.
Only sound goes through here: nothing of a face.
"""
from __future__ import annotations

import io
import logging
from fractions import Fraction
from typing import Optional

import av

log = logging.getLogger("ideud")

CHOICES = (("aac", 0), ("libopus", 48000))  # (encoder, sample rate it needs: 0 = the source's)
BIT_RATE = 128_000
# muxers that do their own network I/O, so cannot write a header into memory: their streams go out
# as RTP, whose muxer is asked instead (it writes into memory, one stream at a time)
CARRIED_AS_RTP = {"rtsp", "sap"}
# audio every player of the container plays, by the container format's name (others: any it holds)
PLAYED_IN = {"mp4": {"aac", "mp3", "ac3", "eac3"}}


def _header_written(container, add) -> bool:
    """Whether a container of this one's format takes the stream `add(c)` adds, header included
    (tried in memory): some muxers (Ogg) take any stream when it is added and refuse it only when
    the header is written, at the first frame. RTSP is asked through RTP (`CARRIED_AS_RTP`)."""
    name = container.format.name
    try:
        with av.open(io.BytesIO(), "w", format="rtp" if name in CARRIED_AS_RTP else name) as c:
            add(c)
            c.start_encoding()
        return True
    except Exception:
        return False


def takes_audio(container, codec: str) -> bool:
    """Whether this output container can hold an audio stream of this encoder."""
    try:
        av.Codec(codec, "w")
    except Exception:
        return False
    return _header_written(container, lambda c: c.add_stream(codec, rate=48000))


def holds_as_is(container, template) -> bool:
    """Whether this output container can hold a copy of this input stream (for audio: one its
    players play, `PLAYED_IN`)."""
    played = PLAYED_IN.get(container.format.name)
    if played is not None and template.type == "audio":
        codec = getattr(getattr(template.codec_context, "codec", None), "canonical_name", None)
        if codec not in played:
            return False
    return _header_written(container, lambda c: c.add_stream_from_template(template))


class AudioTranscoder:
    """One input audio stream decoded and encoded into a new stream of `container`."""

    def __init__(self, container, template, codec: str, rate: int):
        cc = template.codec_context
        rate = rate or cc.sample_rate or 48000
        # a decoder of its own, not the input stream's: a live source's container is closed and
        # reopened on a reconnect while this file stays open
        self.decoder = av.CodecContext.create(cc.name, "r")
        if cc.extradata:
            self.decoder.extradata = cc.extradata
        self.decoder.sample_rate = cc.sample_rate
        self.decoder.layout = cc.layout
        self.stream = container.add_stream(codec, rate=rate)
        self.stream.layout = cc.layout.name if cc.layout and cc.layout.nb_channels <= 2 else "stereo"
        self.stream.bit_rate = BIT_RATE
        enc = self.stream.codec_context
        fmt = enc.codec.audio_formats[0].name
        size = 960 if codec == "libopus" else 1024  # Opus takes 20 ms frames; AAC 1024 samples
        self.resampler = av.AudioResampler(format=fmt, layout=self.stream.layout, rate=rate, frame_size=size)
        self.rate = rate
        self.next_pts: Optional[int] = None  # in 1/rate
        self.name = codec

    def encode(self, packet: "av.Packet") -> list:
        """The output packets this input packet gives (none while the encoder fills its frames)."""
        out = []
        try:
            frames = self.decoder.decode(packet)
        except av.error.FFmpegError:
            return out  # a packet the decoder refuses is lost, as a refused copy is
        for frame in frames:
            if self.next_pts is None and frame.pts is not None and frame.time_base:
                self.next_pts = round(float(frame.pts * frame.time_base) * self.rate)
            out += self._encode(self.resampler.resample(frame))
        return out

    def flush(self) -> list:
        return self._encode(self.resampler.resample(None)) + list(self.stream.encode(None))

    def _encode(self, frames) -> list:
        out = []
        for f in frames:
            f.pts, f.time_base = self.next_pts or 0, Fraction(1, self.rate)
            self.next_pts = (self.next_pts or 0) + f.samples
            out += self.stream.encode(f)
        return out


def transcoder_for(container, template) -> Optional[AudioTranscoder]:
    """A transcoder into the first of CHOICES this container holds, or None (it holds no audio: GIF)."""
    for codec, rate in CHOICES:
        if takes_audio(container, codec):
            try:
                return AudioTranscoder(container, template, codec, rate)
            except (ValueError, av.error.FFmpegError) as e:
                log.debug("audio encoder %s: %s", codec, e)
    return None


def output_stream(container, template) -> tuple:
    """(the output stream for a copied input stream, its transcoder or None): a copy where the
    container holds it, else for audio a stream encoded once (`transcoder_for`); (None, None) where
    neither (a subtitle the container refuses, audio into a GIF)."""
    try:
        if holds_as_is(container, template):
            return container.add_stream_from_template(template), None
    except (ValueError, TypeError, av.error.FFmpegError):
        pass
    tr = transcoder_for(container, template) if template.type == "audio" else None
    return (None, None) if tr is None else (tr.stream, tr)
