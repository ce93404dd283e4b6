"""One OpenBLAS thread while a FaceProcessor is open, for library callers too.

The matrices of the face path are tiny (a 120-component PCA decode, 468-point fits): a BLAS
thread pool only fights FaceMesh's and onnxruntime's threads for the cores. On 2 cores a caller
who had not set OPENBLAS_NUM_THREADS=1 ran ~3.5x slower. The CLI sets the variable before numpy
loads; a library caller imports numpy first, so the loaded OpenBLAS libraries (numpy's and
scipy's, found in /proc/self/maps) are told directly through their C API. What they were set to
is given back when the last processor closes. A caller who set OPENBLAS_NUM_THREADS is left
alone. Elsewhere than Linux this does nothing.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading

# (setter, getter) of the OpenBLAS builds numpy and scipy wheels ship
_SYMBOLS = (("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"),
            ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"))

_lock = threading.Lock()
_holders = 0
_saved: list = []  # (setter, previous thread count)


def _openblas_controls() -> list:
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so[^\s]*)", f.read())))
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                found.append((setter, getter))
                break
    return found


def acquire(threads: int = 1) -> None:
    """Limit the loaded OpenBLAS libraries to `threads` (first holder only)."""
    global _holders
    with _lock:
        _holders += 1
        if _holders > 1 or "OPENBLAS_NUM_THREADS" in os.environ:
            return
        for setter, getter in _openblas_controls():
            _saved.append((setter, int(getter())))
            setter(int(threads))


def release() -> None:
    """The last holder gives the libraries their previous thread counts back."""
    global _holders
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0:
            while _saved:
                setter, previous = _saved.pop()
                setter(previous)


def current() -> list[int]:
    """The thread counts of the loaded OpenBLAS libraries (for tests and reports)."""
    return [int(getter()) for _, getter in _openblas_controls()]
