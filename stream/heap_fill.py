"""New heap memory filled with one byte while a reproducible file is encoded (glibc's M_PERTURB).

The same frames did not always give the same MP4 bytes (README, tenth session): every frame,
its pts and the floating-point mode handed to libx264 were the same, a second encoder fed the same
frames alongside gave the reference's packets, and the file's own encoder did not, now and then
(the bottom macroblock row of an IDR frame first). With every new heap block filled with one byte
(`MALLOC_PERTURB_`) the differences were gone: 0 of 80 rounds of tests/test_batch.py's three clips
against 5-13 of 40 without, the detection thread on. So something on the encoder's path reads heap
memory it never wrote, and what it finds there depends on what the process's other threads freed
before. Filling new blocks makes that read the same in every run.

`hold()` turns the filling on for as long as one holder (a `VideoSink` asked for reproducible
output, i.e. a run with a fixed seed) is open; the last `release()` puts back the process's own
setting. It is process-wide while held: every allocation pays a memset (~5 % of the 4-person 360p
bench clip's speed, two alternating pairs). Where the C library is not glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

M_PERTURB = -6  # glibc mallopt parameter: fill new blocks with ~byte, freed ones with byte
FILL_BYTE = 165  # the value measured with (MALLOC_PERTURB_=165)

_lock = threading.Lock()
_holders = 0


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does not know M_PERTURB
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return fn


def _own_setting() -> int:
    try:
        return int(os.environ.get("MALLOC_PERTURB_", "0")) & 0xFF
    except ValueError:
        return 0


def hold() -> bool:
    """Fill new heap blocks from now on (until the matching `release`); False where it cannot."""
    global _holders
    fn = _mallopt()
    if fn is None:
        return False
    with _lock:
        if _holders == 0 and fn(M_PERTURB, FILL_BYTE) != 1:
            return False
        _holders += 1
    return True


def release() -> None:
    global _holders
    fn = _mallopt()
    if fn is None:
        return
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0:
            fn(M_PERTURB, _own_setting())


def holders() -> int:
    return _holders
