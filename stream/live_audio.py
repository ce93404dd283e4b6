"""AAC framing for live outputs: a camera's AAC comes with ADTS headers (MPEG-TS, most RTSP
cameras), which MP4, FLV and RTSP do not take; they want raw AAC frames and the stream's
configuration (AudioSpecificConfig) in their header (RTSP: its SDP), read here from the packets'
ADTS headers."""
from __future__ import annotations

import os
from typing import Optional

import av

from ideud.stream.encode import FORMAT_OF_EXT

# AAC's configuration in the header (RTSP: in the SDP it announces, which has no room for ADTS)
RAW_AAC_FORMATS = {"mp4", "mov", "ipod", "ismv", "3gp", "3g2", "psp", "f4v", "flv", "rtsp"}


def needs_raw_aac(url: str, fmt: Optional[str]) -> bool:
    """Whether the output's muxer takes AAC only without ADTS headers (its configuration in the header)."""
    name = fmt or FORMAT_OF_EXT.get(os.path.splitext(url.split("?", 1)[0])[1].lower())
    return bool(name) and bool(RAW_AAC_FORMATS & set(name.split(",")))


def adts_stream(stream) -> bool:
    """An AAC stream without a global header: its packets carry ADTS headers."""
    cc = stream.codec_context
    return cc.name == "aac" and not cc.extradata


def adts_config(data: bytes) -> Optional[bytes]:
    """The 2-byte AudioSpecificConfig an ADTS header describes (profile, rate index, channels), or None."""
    if len(data) < 7 or data[0] != 0xFF or (data[1] & 0xF6) != 0xF0:
        return None
    profile, rate, channels = (data[2] >> 6) & 3, (data[2] >> 2) & 0xF, ((data[2] & 1) << 2) | (data[3] >> 6)
    v = ((profile + 1) << 11) | (rate << 7) | (channels << 3)
    return bytes([v >> 8, v & 0xFF])


def without_adts(packet: "av.Packet") -> Optional["av.Packet"]:
    """The packet's raw AAC frame (its ADTS header off: 7 bytes, 9 with a CRC); None if it has none."""
    data = bytes(packet)
    if adts_config(data) is None:
        return None
    out = av.Packet(data[7 if data[1] & 1 else 9:])
    out.pts, out.dts, out.time_base, out.duration = packet.pts, packet.dts, packet.time_base, packet.duration
    return out
