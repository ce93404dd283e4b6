"""One check, used wherever a report is written: nothing of the real person is in it."""
from __future__ import annotations

import json
import math
import re

import numpy as np


FORBIDDEN_KEYS = ("seed", "seeds", "perturbation", "noise")  # with them Step I could be undone
CODE_SIZED = 12  # a list of this many numbers could be a code or a noise vector (the ID code has 40)


def assert_nothing_of_the_person(report: dict, secrets) -> None:
    """`secrets`: the ID codes and embeddings the run held in memory. None of their values, no list as
    long as an embedding and no code-sized list of numbers at all may appear in the report; nor a key
    that names a seed or a perturbation (the noise, or the seed it is drawn from, undoes Step I)."""
    text = json.dumps(report)
    numbers = {float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)}
    for vec in secrets:
        # an ID code clipped to [-1, 1] holds many values of exactly +-1: a bound, not the person (a
        # report's "1.0", e.g. the restore worker's faces per call, met every one of them)
        values = [float(v) for v in np.ravel(vec) if abs(v) > 0.05 and abs(v) != 1.0]
        for digits in (3, 4, 6):  # as a report would write them (2 digits would match timings by chance)
            # distinct values: one number of the report can match one value of the person only once
            hits = _hits(values, numbers, digits)
            allowed = _chance_bound(values, numbers, digits)
            assert hits <= allowed, f"{hits} of {len(values)} values of an ID code or embedding are in the report"

    assert_no_way_back(report)
    for word in ("z_id", "embedding", "descriptor", "landmarks"):
        assert word not in text


# shifts, in steps of the last digit, that give numbers the size of the person's and not theirs
_SHIFTS = [s * k for k in range(3, 13) for s in (-1, 1)]


def _hits(values, numbers: set, digits: int, shift: int = 0) -> int:
    step = 10.0 ** -digits
    return sum(round(v + shift * step, digits) in numbers for v in {round(v, digits) for v in values})


def _chance_bound(values, numbers: set, digits: int) -> int:
    """How many of `values` a report's own numbers (thresholds, timings, distances) may meet by chance.
    A leak writes (nearly) every value. Chance is measured, not guessed: the same values shifted a few
    steps of the last digit meet the report's numbers E times on average; allow E + 4 sqrt(E) (a
    Poisson count goes over it about once in 4,000 runs or fewer), and never fewer than 2 or a
    twentieth. Never half of the distinct values, though: a leak's own values raise E (a 512-value
    embedding written at 3 digits fills ~40 % of the slots it spans, so its shifts meet it there),
    and a leak writes (nearly) all of them (tests/test_report_checks.py). (A fixed allowance of a
    twentieth failed a run in a few: a report's thresholds, distances and timings met 4 of a dlib
    embedding's ~90 values.)"""
    expected = sum(_hits(values, numbers, digits, s) for s in _SHIFTS) / len(_SHIFTS)
    distinct = len({round(v, digits) for v in values})
    return max(2, len(values) // 20, min(math.ceil(expected + 4 * math.sqrt(expected)), distinct // 2))


def _walk(o, key=None):
    """(key, value) of every dict entry and every list (lists under the key that holds them)."""
    if isinstance(o, dict):
        for k, v in o.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(o, list):
        yield key, o
        for v in o:
            yield from _walk(v, key)


def assert_no_way_back(report: dict, seed=None, noises=()) -> None:
    """Nothing in the report helps undo Step I: no key named seed or perturbation (at any depth), no
    code-sized list of numbers; with `seed` (choose a distinctive one), not its value; with `noises`
    (the tracks' noise vectors the run held in memory), none of their values as a report writes numbers."""
    text = json.dumps(report)
    doc = json.loads(text)
    for key, v in _walk(doc):
        assert str(key).lower() not in FORBIDDEN_KEYS, f"key {key!r} in the report"
        if isinstance(v, list):
            assert len(v) < 128, key  # an embedding's length
            numbers = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
            assert not (len(numbers) >= CODE_SIZED and any(isinstance(x, float) for x in numbers)), \
                f"a code-sized list of numbers under {key!r}"
    if seed is not None:
        # as a number of its own (a distinctive seed: a small one is met by counts and sizes)
        assert not re.search(rf"(?<![\d.]){int(seed)}(?![\d.])", text), "the seed's value is in the report"
        assert doc.get("options", {}).get("seed_given", True) is True
    found = {float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)}
    for n in noises:
        values = [float(v) for v in np.ravel(n) if abs(v) > 1e-3]
        assert values, "an empty noise vector checks nothing"
        # as the report wrote them (6 digits); at 4 digits a timing meets one or two by chance
        assert not any(round(v, 6) in found for v in values), "a value of a track's noise is in the report"
        assert sum(round(v, 4) in found for v in set(values)) <= 2, "values of a track's noise are in the report"
