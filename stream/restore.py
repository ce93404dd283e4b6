"""Step II: turn the re-rendered (warped) hybrid face into a natural face.

Every restorer has one method that does the work, `restore(items) -> list of
RGB crops`, on a batch so that GPU restorers can batch faces across frames;
the rest of what the pipeline asks of it is the `Restorer` protocol
(stream/protocols.py).
The crops handed back have the same size as `item.image`; the blend stage
pastes them back through `item.mask`.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ideud.stream.protocols import Restorer
from ideud.stream.types import RestoreItem


class IdentityRestorer:
    """Hands the warped face back unchanged (for tests and `--restorer none`)."""

    name = "none"
    on_gpu = False
    max_batch = 16

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        return [it.image for it in items]

    def warmup(self) -> None:
        """Nothing to prepare."""

    def forget(self, track_id: int) -> None:
        """Nothing kept per track."""


class ClassicRestorer:
    """No-weights restorer: undo the softening of the bilinear warp.

    Resampling through `cv2.remap` low-passes the face a little; an unsharp
    mask of matching strength restores the original's sharpness so the face
    does not look smoothed next to the untouched hair and background.
    """

    name = "classic"
    on_gpu = False
    max_batch = 16

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

    def warmup(self) -> None:
        """Nothing to prepare."""

    def forget(self, track_id: int) -> None:
        """Nothing kept per track."""


# name -> class, or "module:attribute" of a factory imported on demand (the GAN tier needs torch,
# an optional extra; the bank loads its donors). Restorer modules never import this one: no cycle.
RESTORERS: dict = {
    "none": IdentityRestorer,
    "classic": ClassicRestorer,
    "bank": "ideud.stream.restore_bank:BankRestorer",
    "gan": "ideud.stream.restore_gan:make_gan_restorer",
    "prior": "ideud.stream.restore_prior:PriorRestorer",
    "learned": "ideud.stream.restore_learned:LearnedRestorer",
}


# restorers whose new face depends on the ID-code noise σ (--scale)
TAKES_SIGMA = {"prior", "learned"}


def make_restorer(name: str, sigma: float | None = None, **kwargs) -> Restorer:
    if sigma is not None and name in TAKES_SIGMA:
        kwargs["sigma"] = sigma
    try:
        factory = RESTORERS[name]
    except KeyError:
        raise ValueError(f"unknown restorer {name!r}; choose one of auto, {', '.join(sorted(RESTORERS))}") from None
    if isinstance(factory, str):
        import importlib

        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)


def register_restorer(name: str, factory) -> None:
    """Adds a restorer (a class or factory, or "module:attribute"); a name is registered once."""
    if name in RESTORERS:
        raise ValueError(f"restorer {name!r} is registered already")
    RESTORERS[name] = factory


# best restorer without downloaded weights, by tools/bench/bench_face_prior.py on the held-out portraits
# (dlib mean 0.662 vs the bank's 0.598; EdgeFace matches 76 vs 97 of 100; classic: geometry only)
EMBEDDED_DEFAULT = "prior"


def auto_restorer(log=None, gan_engine: str = "auto", sigma: float | None = None) -> Restorer:
    """The GAN tier when its weights are present and a GPU can run it; else the embedded tier.

    On a CPU the full GAN takes ~20 s per face, so it is used there only when asked for by name.
    """
    from ideud.models import registry
    from ideud.stream.restore_gan import gan_engine_options, load_gan_restorer

    # without the weights there is nothing to run on a GPU, and torch (~1.3 s to import) stays unloaded
    if not gan_installed():
        reason = f"the GAN weights are not installed ({registry.DEFAULT_GAN}: `ideud-video models fetch`)"
    elif not _cuda_available():
        reason = "no CUDA GPU for the GAN restorer"
    else:
        restorer, reason = load_gan_restorer(**gan_engine_options(gan_engine))
        if restorer is not None:
            if log:
                log(f"restorer: {reason}")
            return restorer
    if log:
        log(f"using the embedded tier ({EMBEDDED_DEFAULT} restorer): {reason}")
    return make_restorer(EMBEDDED_DEFAULT, sigma=sigma)


def gan_installed() -> bool:
    """The GAN tier's weights are where `ideud-video models fetch` puts them (auto may pick that tier)."""
    from ideud.models import registry

    return registry.model_path(registry.DEFAULT_GAN).is_file()


def cpu_restorer_for(options) -> Restorer | None:
    """The restorer `restorer_for(options)` builds, where that is known without torch or a model file
    (auto without the GAN weights, or a restorer named other than gan); None otherwise."""
    if options.restorer == "gan" or (options.restorer == "auto" and gan_installed()):
        return None
    return make_restorer(EMBEDDED_DEFAULT if options.restorer == "auto" else options.restorer, sigma=options.scale)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def restorer_for(options) -> Restorer:
    """The restorer `options` (stream/options.py Options) ask for."""
    if options.restorer == "auto":
        import logging  # its own logger: -q keeps it

        return auto_restorer(logging.getLogger("ideud.tier").info, options.gan_engine, sigma=options.scale)
    if options.restorer == "gan":
        from ideud.stream.restore_gan import gan_engine_options  # torch: an optional extra

        return make_restorer("gan", **gan_engine_options(options.gan_engine))
    return make_restorer(options.restorer, sigma=options.scale)
