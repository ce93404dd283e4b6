"""The public-domain portraits (shared/data/pd-portraits): where they are and the one split everybody uses.

Builds (face prior, donor banks, recognizer calibration, Step II training) use `build_names()` only;
measurements use `held_out_names()`. The split is a hash of the file name, so it does not move when
portraits are added or removed, and nobody tunes on the held-out people by accident.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

HELD_OUT_PER_MILLE = 140  # ~100 of the 799 portraits
# what model files built from the build split say of their source (their meta_source)
SOURCE = ("ideud.eval.portraits.build_names() of shared/data/pd-portraits (public domain, "
          "US Congress official portraits via unitedstates/images)")


def portraits_dir() -> Path | None:
    """The portraits folder: $IDEUD_PORTRAITS, else ../shared/data/pd-portraits beside a checkout."""
    env = os.environ.get("IDEUD_PORTRAITS")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    for up in here.parents[:4]:
        candidates.append(up / "shared" / "data" / "pd-portraits")
        candidates.append(up.parent / "shared" / "data" / "pd-portraits")
    candidates.append(Path.cwd().parent / "shared" / "data" / "pd-portraits")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.jpg")):
            return c
    return None


def is_held_out(name: str) -> bool:
    """True for the portraits kept out of everything the project builds."""
    stem = Path(name).stem
    h = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:4], "big")
    return h % 1000 < HELD_OUT_PER_MILLE


def all_names(folder: Path | None = None) -> list[str]:
    folder = folder or portraits_dir()
    if folder is None:
        return []
    return sorted(p.name for p in Path(folder).glob("*.jpg"))


def build_names(folder: Path | None = None) -> list[str]:
    return [n for n in all_names(folder) if not is_held_out(n)]


def held_out_names(folder: Path | None = None) -> list[str]:
    return [n for n in all_names(folder) if is_held_out(n)]
