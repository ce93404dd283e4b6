"""Fail when pip's log shows more than one wheel of a watched distribution: pip backtracked through
releases (each one a full download) before it found one that fits the pins.

    python .ci/one_wheel_each.py PIP.LOG opencv jax jaxlib

A watched name matches every distribution that starts with it (opencv: opencv-python,
opencv-contrib-python, ...), so two different OpenCV packages count as two wheels as well.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict

# "Downloading opencv_contrib_python-4.11.0.86-cp37-abi3-....whl (69.1 MB)", also as a URL, from the
# cache, or from a local --find-links folder; `.whl.metadata` fetches are not wheels
WHEEL = re.compile(r"(?:Downloading|Using cached|Processing|Saved|Added)\s+(?:\S*/)?([A-Za-z0-9_.]+)-([^-\s/]+)-[^\s/]*\.whl\b(?!\.metadata)")


def wheels(log_text: str) -> dict[str, set[str]]:
    """distribution (normalised) -> the wheel versions the log shows."""
    seen = defaultdict(set)
    for name, version in WHEEL.findall(log_text):
        seen[re.sub(r"[-_.]+", "-", name).lower()].add(version)
    return seen


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], errors="replace") as f:
        seen = wheels(f.read())
    bad = 0
    for watched in argv[1:]:
        hits = {f"{d}-{v}" for d, vs in seen.items() if d == watched or d.startswith(watched + "-") for v in vs}
        status = "ok" if len(hits) <= 1 else "FAIL"
        bad += status == "FAIL"
        print(f"{status}: {watched}: {len(hits)} wheel(s) {' '.join(sorted(hits))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
