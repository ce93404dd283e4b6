"""One check, used wherever a report is written: nothing of the real person is in it."""
from __future__ import annotations

import json
import re

import numpy as np


def assert_nothing_of_the_person(report: dict, secrets) -> None:
    """`secrets`: the ID codes and embeddings the run held in memory. None of their values, no list as
    long as an embedding, and no code-sized list but the perturbations (drawn from the track seed) may
    appear in the report."""
    text = json.dumps(report)
    numbers = {float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)}
    for vec in secrets:
        # an ID code clipped to [-1, 1] holds many values of exactly +-1: a bound, not the person (a
        # report's "1.0", e.g. the restore worker's faces per call, met every one of them)
        values = [float(v) for v in np.ravel(vec) if abs(v) > 0.05 and abs(v) != 1.0]
        # a leak writes (nearly) every value; a report's own numbers (timings, distances) meet a few of a
        # 512-value embedding's values at 3 digits by chance
        allowed = max(2, len(values) // 20)
        for digits in (3, 4, 6):  # as a report would write them (2 digits would match timings by chance)
            # distinct values: one number of the report can match one value of the person only once
            hits = sum(v in numbers for v in {round(v, digits) for v in values})
            assert hits <= allowed, f"{hits} of {len(values)} values of an ID code or embedding are in the report"

    def lists(o, key=None):
        if isinstance(o, dict):
            for k, v in o.items():
                yield from lists(v, k)
        elif isinstance(o, list):
            yield key, o
            for v in o:
                yield from lists(v, key)

    for key, v in lists(json.loads(text)):
        assert len(v) < 128, key  # an embedding's length
        if len(v) >= 12 and all(isinstance(x, float) for x in v):
            assert key == "perturbation", key
    for word in ("z_id", "embedding", "descriptor", "landmarks"):
        assert word not in text
