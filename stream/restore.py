"""Step II: turn the re-rendered (warped) hybrid face into a natural face.

Every restorer has one method, `restore(items) -> list of RGB crops`, and
works on a batch so that GPU restorers can batch faces across frames.
The crops handed back have the same size as `item.image`; the blend stage
pastes them back through `item.mask`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np


@dataclass
class RestoreItem:
    """One face to restore, all in the coordinates of one crop of the frame."""

    image: np.ndarray  # HxWx3 uint8 RGB: the warped (re-rendered) crop
    original: np.ndarray  # HxWx3 uint8 RGB: the same crop before the warp
    mask: np.ndarray  # HxW float32 in [0, 1]: face region (1 = taken from `image`)
    landmarks: np.ndarray  # (468, 2) perturbed landmark positions in crop pixels
    track_id: int
    seed: int  # the track's seed, for restorers that draw per-track randomness
    level: int = 0  # privacy-guard escalation level asked of the restorer


class Restorer(Protocol):
    name: str

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        ...


class IdentityRestorer:
    """Hands the warped face back unchanged (for tests and `--restorer none`)."""

    name = "none"

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        return [it.image for it in items]


class ClassicRestorer:
    """No-weights restorer: undo the softening of the bilinear warp.

    Resampling through `cv2.remap` low-passes the face a little; an unsharp
    mask of matching strength restores the original's sharpness so the face
    does not look smoothed next to the untouched hair and background.
    """

    name = "classic"

    def __init__(self, amount: float = 0.6, sigma_frac: float = 0.006):
        self.amount = amount
        self.sigma_frac = sigma_frac

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        out = []
        for it in items:
            sigma = max(0.6, self.sigma_frac * max(it.image.shape[:2]))
            low = cv2.GaussianBlur(it.image, (0, 0), sigma)
            out.append(cv2.addWeighted(it.image, 1 + self.amount, low, -self.amount, 0))  # saturating uint8
        return out


RESTORERS = {"none": IdentityRestorer, "classic": ClassicRestorer}


def make_restorer(name: str, **kwargs) -> Restorer:
    try:
        cls = RESTORERS[name]
    except KeyError:
        raise ValueError(f"unknown restorer {name!r}; choose one of {', '.join(sorted(RESTORERS))}") from None
    return cls(**kwargs)


def register_restorer(name: str, factory) -> None:
    """Optional tiers (GAN, k-Same) add themselves here when importable."""
    RESTORERS[name] = factory


def _gan_restorer(**kwargs) -> Restorer:
    # imported on demand: the GAN tier needs torch, an optional extra
    from ideud.stream.restore_gan import make_gan_restorer

    return make_gan_restorer(**kwargs)


RESTORERS["gan"] = _gan_restorer


def _bank_restorer(**kwargs) -> Restorer:
    # donor-bank detail re-synthesis (stream/restore_bank.py), no weights; imported on demand
    from ideud.stream.restore_bank import BankRestorer

    return BankRestorer(**kwargs)


RESTORERS["bank"] = _bank_restorer
EMBEDDED_DEFAULT = "bank"  # best restorer without downloaded weights, by tools/bench_privacy.py (classic: geometry only)


def auto_restorer(log=None, gan_engine: str = "auto") -> Restorer:
    """The GAN tier when its weights are present and a GPU can run it; else the embedded tier.

    On a CPU the full GAN takes ~20 s per face, so it is used there only when asked for by name.
    """
    from ideud.stream.restore_gan import gan_engine_options, load_gan_restorer

    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    if gpu:
        restorer, reason = load_gan_restorer(**gan_engine_options(gan_engine))
        if restorer is not None:
            if log:
                log(f"restorer: {reason}")
            return restorer
    else:
        reason = "no CUDA GPU for the GAN restorer"
    if log:
        log(f"using the embedded tier ({EMBEDDED_DEFAULT} restorer): {reason}")
    return make_restorer(EMBEDDED_DEFAULT)
