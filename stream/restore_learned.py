"""Step II, learned here (`--restorer learned`): the face prior's new face, made natural by a small network.

    crop -> PriorRestorer (the new face: stream/restore_prior.py) -> 128 aligned face -> StyleUNet
         -> the network's change, warped back and added inside the face oval

The network (models/restorer_net.py, ~0.48 M parameters) was trained by tools/build/train_restorer.py
on the build portraits: input the project's own Step I at σ = 0 (the person's own code re-rendered
by the prior) with real footage's degradations, target the real portrait, with an identity loss to
the input render. At run time it gets the *perturbed* render, so it keeps the new face's identity.
See docs/restorer_learned.md for the training command and the measured numbers.

Only the change the network makes is resampled (at 128 px), and it is added to the render at the
render's own size: a big face keeps its full-resolution detail. Weights are checked against
WEIGHTS_SHA256 before they are used; a file that does not match is refused (InputError, one line).
Runs through engines/ (onnxruntime: the CPU here, CUDA where its provider is installed).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ideud.models import face_prior as fp
from ideud.models.face_align import align_face, five_points_from_facemesh
from ideud.stream.errors import InputError
from ideud.stream.types import RestoreItem

WEIGHTS_PATH = Path(fp.__file__).with_name("data") / "restorer_learned.onnx"
WEIGHTS_SHA256 = "b9e5ab34b33d22cb6576b8b18c464a22444a3b57d17162af53a08a2920a24d5d"
SIZE = 128  # the network's working resolution (models/restorer_net.SIZE; not imported: that needs torch)


def checked_weights(path: Path, sha256: str) -> Path:
    """`path` if its sha256 is `sha256`; else InputError with one line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"learned restorer weights missing: {path}")
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != sha256:
        raise InputError(f"learned restorer weights {path.name} are corrupt or not the shipped ones "
                         f"(sha256 {got[:12]}..., expected {sha256[:12]}...)")
    return path


class LearnedRestorer:
    """The prior restorer's new face, then the learned network; see the module docstring."""

    name = "learned"
    on_gpu = False
    cpu_heavy = True  # ~10 ms of Python and numpy a face: worth a process of its own (restore_processes.py)
    max_batch = 16

    def __init__(self, sigma: float = 0.25, path: Optional[Path] = None, sha256: str = WEIGHTS_SHA256,
                 first=None, device: Optional[str] = None, threads: int = 1):
        from ideud.engines.onnx_engine import OnnxEngine
        from ideud.stream.restore_prior import PriorRestorer

        onnx = checked_weights(path or WEIGHTS_PATH, sha256)
        self.first = first if first is not None else PriorRestorer(sigma=sigma)
        self.engine = OnnxEngine(onnx, device=device, max_batch=self.max_batch, threads=threads)
        self.on_gpu = bool(self.engine.on_cuda)
        self.log = getattr(self.first, "log", [])

    def warmup(self) -> None:
        self.first.warmup()
        self.engine.run(np.zeros((1, 3, SIZE, SIZE), np.float32))

    def forget(self, track_id: int) -> None:
        self.first.forget(track_id)

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        renders = self.first.restore(items)
        return self.refine(renders, [it.landmarks for it in items])

    def refine(self, renders: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The network on renders at their landmarks (crop pixels); renders too small are handed back."""
        out = list(renders)
        todo, aligned = [], []
        for i, (img, lm) in enumerate(zip(renders, landmarks)):
            lm = np.asarray(lm, np.float64)[:, :2]
            if fp.face_width(lm) < 8 or min(img.shape[:2]) < 8:
                continue
            aligned.append(align_face(img, five_points_from_facemesh(lm), SIZE))
            todo.append((i, lm))
        if not todo:
            return out
        x = np.stack([a.image for a in aligned]).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
        y = np.asarray(self.engine.run(x))
        for (i, lm), a, net in zip(todo, aligned, y):
            img = renders[i]
            h, w = img.shape[:2]
            change = (net.transpose(1, 2, 0) + 1.0) * 127.5 - a.image.astype(np.float32)
            back = cv2.warpAffine(change, a.inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            face = fp.face_region(lm, (h, w), fp.face_width(lm))[..., None]
            out[i] = np.clip(img.astype(np.float32) + back * face + 0.5, 0, 255).astype(np.uint8)
        return out
