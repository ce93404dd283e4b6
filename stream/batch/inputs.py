"""What a batch reads: files, folders (recursive) and globs, each with its mirrored place under OUT."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Optional

from ideud.stream.decode import IMAGE_EXTENSIONS, is_image
from ideud.stream.errors import InputError, UsageError

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".wmv", ".flv", ".3gp", ".ogv", ".mxf"}


@dataclass
class Item:
    src: str  # absolute input path
    rel: str  # path relative to its input root (posix), mirrored under OUT
    dst: str  # absolute output path


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_inputs(inputs: list[str], out_dir: str, ext: Optional[str] = None) -> list[Item]:
    """Files, folders (recursive: video and image files) and globs -> items with mirrored outputs."""
    out_abs = os.path.abspath(out_dir)
    wanted = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
    found: list[tuple[str, str]] = []

    def inside_out(p: str) -> bool:
        return os.path.commonpath([os.path.abspath(p), out_abs]) == out_abs

    for spec in inputs:
        if os.path.isfile(spec):
            found.append((os.path.abspath(spec), os.path.basename(spec)))
        elif os.path.isdir(spec):
            root = os.path.abspath(spec)
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not inside_out(os.path.join(folder, d)))
                for f in sorted(files):
                    p = os.path.join(folder, f)
                    if not f.startswith(".") and os.path.splitext(f)[1].lower() in wanted and not inside_out(p):
                        found.append((p, os.path.relpath(p, root)))
        elif _has_magic(spec):
            parts = spec.split(os.sep)
            base_parts = []
            for part in parts:
                if _has_magic(part):
                    break
                base_parts.append(part)
            base = os.path.abspath(os.sep.join(base_parts) or ".")
            matches = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p) and not inside_out(p))
            if not matches:
                raise InputError(f"{spec}: no file matches")
            found.extend((os.path.abspath(p), os.path.relpath(os.path.abspath(p), base)) for p in matches)
        else:
            raise InputError(f"{spec}: no such file or folder")
    items, seen, seen_src = [], {}, set()
    for src, rel in found:
        if src in seen_src:
            continue  # named twice (a folder and a glob): the first spelling decides where it goes
        seen_src.add(src)
        rel = rel.replace(os.sep, "/")
        if ext and not is_image(src):
            rel = os.path.splitext(rel)[0] + (ext if ext.startswith(".") else "." + ext)
        if rel in seen:
            raise UsageError(f"{src} and {seen[rel]} would both be written to {rel}")
        seen[rel] = src
        dst = os.path.join(out_abs, rel)
        if os.path.abspath(dst) == src:
            raise UsageError(f"{src}: output would replace the input; choose another --out")
        items.append(Item(src, rel, dst))
    return items

