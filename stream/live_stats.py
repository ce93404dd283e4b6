"""A live run's statistics: rates, drops and receive-to-write latency (nothing about faces)."""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class Stats:
    """Rates, drops and receive-to-write latency (nothing about faces)."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.received = 0
        self.written = 0
        self.latency: deque = deque(maxlen=100_000)  # s, the most recent frames
        self.latency_count = 0
        self.write_times: deque = deque(maxlen=100_000)  # monotonic s, paired with `latency`
        self.drop_times: deque = deque(maxlen=100_000)  # monotonic s of each drop
        self.outages: list[dict] = []
        self._lock = threading.Lock()
        self._mark = (self.t0, 0, 0, 0)  # for the periodic line: time, received, written, latency count

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._mark = (self.t0, self.received, self.written, self.latency_count)

    def dropped(self) -> None:
        self.drop_times.append(time.monotonic())

    def received_one(self) -> None:
        with self._lock:
            self.received += 1

    def wrote(self, arrived: float) -> None:
        with self._lock:
            self.written += 1
            now = time.monotonic()
            self.latency.append(now - arrived)
            self.write_times.append(now)
            self.latency_count += 1

    def summary(self, dropped: int) -> dict:
        with self._lock:
            lat = np.array(self.latency) * 1000 if self.latency else np.zeros(0)
            wall = max(time.monotonic() - self.t0, 1e-9)
            return {"input_fps": round(self.received / wall, 2), "output_fps": round(self.written / wall, 2),
                    "received_frames": self.received, "written_frames": self.written, "dropped_frames": dropped,
                    "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
                    "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
                    "latency_ms_max": round(float(lat.max()), 1) if lat.size else None,
                    "outages": list(self.outages), "wall_s": round(wall, 3)}

    def line(self, dropped: int) -> str:
        """Since the last line: fps in/out, drops, latency p50/p95."""
        with self._lock:
            now = time.monotonic()
            t, r, w, n = self._mark
            dt = max(now - t, 1e-9)
            k = min(self.latency_count - n, len(self.latency))
            recent = np.array(list(self.latency)[len(self.latency) - k:]) * 1000
            self._mark = (now, self.received, self.written, self.latency_count)
            p = (f"{np.percentile(recent, 50):.0f}/{np.percentile(recent, 95):.0f} ms" if recent.size else "-")
            return (f"in {(self.received - r) / dt:.1f} fps, out {(self.written - w) / dt:.1f} fps, "
                    f"dropped {dropped}, latency p50/p95 {p}")


def format_summary(s: dict) -> str:
    p50, p95 = s.get("latency_ms_p50"), s.get("latency_ms_p95")
    lat = f"{p50:.0f}/{p95:.0f} ms" if p50 is not None else "-"
    return (f"input {s['input_fps']:.1f} fps, output {s['output_fps']:.1f} fps, dropped {s['dropped_frames']} "
            f"frames, latency p50/p95 {lat}, {len(s['outages'])} outages")
