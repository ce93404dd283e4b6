"""Seeded runs encode with new heap blocks filled (stream/heap_fill.py): the encoder read heap memory
it had not written, so the same frames did not always give the same bytes (README, tenth session)."""
import ctypes
import sys

import pytest

from clips import moving_faces, write_clip
from ideud.stream import encode, heap_fill
from ideud.stream.decode import VideoSource
from ideud.stream.pipeline import Options, deidentify

glibc = pytest.mark.skipif(heap_fill._mallopt() is None, reason="glibc's mallopt(M_PERTURB) only")


def _fresh_block_bytes(n: int = 65536) -> set:
    """The bytes of a new heap block (above the per-thread cache's sizes, below mmap's threshold)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    p = libc.malloc(n)
    try:
        return set(ctypes.string_at(p, n)[16:-16])
    finally:
        libc.free(p)


@glibc
def test_new_blocks_are_filled_while_held_and_holders_nest():
    assert heap_fill.holders() == 0
    assert heap_fill.hold() and heap_fill.hold()
    assert _fresh_block_bytes() == {0xFF ^ heap_fill.FILL_BYTE}
    heap_fill.release()
    assert heap_fill.holders() == 1 and _fresh_block_bytes() == {0xFF ^ heap_fill.FILL_BYTE}
    heap_fill.release()
    heap_fill.release()  # one too many: ignored
    assert heap_fill.holders() == 0


@glibc
def test_a_seeded_run_holds_while_encoding_and_lets_go_after(tmp_path, monkeypatch):
    src = write_clip(tmp_path / "in.mp4", moving_faces(6, 160, 120, size=60), audio=False)
    seen = []
    write = encode.VideoSink.write

    def spy(self, frame):
        seen.append(heap_fill.holders())
        return write(self, frame)

    monkeypatch.setattr(encode.VideoSink, "write", spy)
    fast = dict(privacy="off", restorer="classic", audio=False)
    deidentify(src, str(tmp_path / "seeded.mp4"), Options(seed=3, **fast))
    assert seen and all(n == 1 for n in seen) and heap_fill.holders() == 0
    seen.clear()
    deidentify(src, str(tmp_path / "unseeded.mp4"), Options(**fast))  # no seed: no reproducibility asked, no cost
    assert seen and all(n == 0 for n in seen)


@glibc
def test_a_sink_that_fails_or_is_dropped_lets_go(tmp_path):
    src = write_clip(tmp_path / "in.mp4", moving_faces(2, 160, 120, size=60), audio=False)
    with VideoSource(str(src), audio=False) as s:
        info = s.info
    info.audio = []
    with pytest.raises(Exception):
        encode.VideoSink(str(tmp_path / "x.jpg"), info, fill_heap=True)  # a video as an image: refused
    assert heap_fill.holders() == 0
    sink = encode.VideoSink(str(tmp_path / "out.mp4"), info, audio=False, fill_heap=True)
    assert heap_fill.holders() == 1
    sink.abort()
    assert heap_fill.holders() == 0 and not (tmp_path / "out.mp4").exists()


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert heap_fill._mallopt() is None and heap_fill.hold() is False
    heap_fill.release()
