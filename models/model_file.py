"""Model data files that rebuild to the same bytes: content hash, fixed-date .npz, checked load.

The face prior and the face shape model (both built from the public-domain portraits) are stored
this way, so a rebuild from the same inputs gives the same file and a damaged file is refused.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from importlib import resources
from typing import Optional

import numpy as np


def digest(arrays: dict, names) -> str:
    """Content hash over `names` of `arrays` (dtype, shape, bytes) in that order."""
    h = hashlib.sha256()
    for name in names:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(arrays: dict, names, path, meta: dict) -> str:
    """Write `names` of `arrays` and `meta` as an .npz whose bytes depend on its contents only."""
    out = {name: arrays[name] for name in names}
    out["digest"] = np.array(digest(arrays, names))
    for key, value in meta.items():
        out[f"meta_{key}"] = np.array(value)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(out):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(out[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    return str(out["digest"])


def load(names, path=None, shipped: Optional[str] = None, what: str = "model") -> tuple[dict, str]:
    """The arrays `names` and their hash, from `path` or the wheel's `models/data/<shipped>`;
    ValueError when the stored hash does not match the contents."""
    if path is None:
        with resources.files("ideud.models").joinpath(f"data/{shipped}").open("rb") as f:
            z = np.load(io.BytesIO(f.read()))
    else:
        z = np.load(path)
    arrays = {name: z[name] for name in names}
    stored = str(z["digest"])
    if digest(arrays, names) != stored:
        raise ValueError(f"{what} is corrupt (content hash mismatch)")
    return arrays, stored
