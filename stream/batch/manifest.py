"""The manifest (OUT/ideud-manifest.jsonl): one JSON line per finished file, and what a re-run may skip."""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from typing import Optional

from ideud.stream.errors import UsageError
from ideud.stream.options import options_report

MANIFEST = "ideud-manifest.jsonl"
HEADER_BYTES = 65536


def file_stamp(path: str) -> dict:
    """Size and SHA-256 of the first 64 KiB: what a re-run checks before skipping a file."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    return {"size": os.path.getsize(path), "header_sha256": hashlib.sha256(head).hexdigest()}



def options_fingerprint(options) -> str:
    """Pipeline settings that change an output (not force/progress/logging). Not the seed itself
    (the manifest sits beside the outputs, and a short hash of a small seed is found by trying
    them): only whether one was given. Another seed alone does not redo a done file (delete the
    manifest to redo it)."""
    d = {k: v for k, v in options_report(options).items()
         if k not in ("force", "progress", "frame_log", "track_only")}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(path: str) -> dict:
    """Last record per input (a torn last line from a crash is ignored)."""
    last = {}
    if not os.path.exists(path):
        return last
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "input" in rec:
                last[rec["input"]] = rec
    return last


def is_done(rec: Optional[dict], dst: str, fingerprint: str) -> bool:
    if not rec or rec.get("status") != "done" or rec.get("options") != fingerprint or not os.path.isfile(dst):
        return False
    try:
        stamp = file_stamp(dst)
    except OSError:
        return False
    return stamp["size"] == rec.get("size") and stamp["header_sha256"] == rec.get("header_sha256")


class Manifest:
    """The manifest file, locked for this run (one batch per OUT folder)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = open(path + ".lock", "w")
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UsageError(f"{os.path.dirname(path)}: another batch is writing to this folder") from None
        except ImportError:
            pass
        # a torn last line (crash mid-write) must not swallow the next record
        if os.path.exists(path) and os.path.getsize(path):
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                with open(path, "a") as f:
                    f.write("\n")

    def append(self, rec: dict) -> None:
        rec = {**rec, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self):
        self._lock.close()
        try:
            os.remove(self.path + ".lock")
        except OSError:
            pass

