"""Undoing the identity mapping as someone who knows the method would: the privacy guard checks
the undone face too (stream/guard.py, once per kept candidate of a search, not per frame).

The face prior restorer (stream/restore_prior.py) maps the person's appearance code to a seeded
new face. Two inverses are known (tools/bench/bench_face_prior.py measured both offline):

    mirror       the output's own appearance code mirrored about the prior's mean (-z): the best
                 inverse derived so far of a mapping that moves the code away from the person's
    second pass  the tool run again on its own output (another seed): it picks another face
                 farthest from the output's code

Each is applied to the candidate output as the guard sees it (the face pasted into the frame
around it) at the points where the face was drawn; the guard then asks both recognizers, every
view, whether the undone face is the person. A restorer with no appearance code to undo (bank,
classic, gan, none) gets no inverse here: its geometry is undone by neither (the perturbation
is drawn from the track seed, which the output does not carry).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ideud.models import face_prior as fp
from ideud.stream.restore_prior import PriorRestorer
from ideud.stream.types import Crop, RestoreItem

UNDO_TRACK = -7  # the restorers' cache key for an undo; forgotten after every call
SECOND_PASS_SEED = 1


class _MirroredCode(PriorRestorer):
    """The prior restorer with the output's own code mirrored about the prior's mean as its target."""

    name = "prior-mirrored"

    def target(self, it: RestoreItem) -> np.ndarray:
        return -self.prior.encode(fp.canvas_reflectance(it.image, it.landmarks))


class Inverse:
    """One known way to undo the mapping: `undo(img, pts, ctx)` -> the undone image (same size) or None."""

    def __init__(self, name: str, restorer: PriorRestorer, seed: int = 0):
        self.name = name
        self.restorer = restorer
        self.seed = seed

    def undo(self, img: np.ndarray, pts: np.ndarray, ctx: Optional[Crop] = None) -> Optional[np.ndarray]:
        it = RestoreItem(image=img, original=img, mask=np.ones(img.shape[:2], np.float32),
                         landmarks=np.asarray(pts, np.float64)[:, :2], track_id=UNDO_TRACK, seed=self.seed)
        try:
            return self.restorer.restore([it])[0]
        finally:
            self.restorer.forget(UNDO_TRACK)  # nothing of this face is kept for the next one


def _prior_of(restorer) -> Optional[fp.FacePrior]:
    """The face prior behind a restorer (through the restore worker or the learned restorer's first stage)."""
    seen = 0
    while restorer is not None and seen < 4:
        if isinstance(restorer, PriorRestorer):
            return restorer.prior
        restorer = getattr(restorer, "restorer", None) or getattr(restorer, "first", None)
        seen += 1
    return None


def inverses_for(restorer) -> list[Inverse]:
    """The known inverses of a restorer's identity mapping ([] where there is none to undo)."""
    prior = _prior_of(restorer)
    if prior is None:
        return []
    return [Inverse("mirror", _MirroredCode(prior=prior)),
            Inverse("second_pass", PriorRestorer(prior=prior), seed=SECOND_PASS_SEED)]


def undone_by_edgeface(inverses: list, two, st, img: np.ndarray, pts: np.ndarray, ctx: Crop, eref,
                       edge_max: float) -> Optional[list]:
    """The candidate undone by every known inverse; None (refused) where EdgeFace (chip and mirror
    of each, one batch) finds the person in one of them, else the undone faces ([] where the
    restorer has no known inverse). `st`: the guard's track, which keeps the numbers for the report."""
    if not inverses:
        return []
    st.inversion_checks += 1
    undone = [inv.undo(img, pts, ctx) for inv in inverses]
    if any(u is None for u in undone):
        st.inversion_refused += 1
        return None  # an undo that cannot be checked is not known to fail: fail closed
    st.inversion_sims = two.edge_similarity([(u, pts) for u in undone], eref, full="quick")
    s = float(st.inversion_sims.max())
    st.inversion = (None, s)
    if s > edge_max:
        st.inversion_refused += 1
        return None
    return undone


def undone_passes_dlib(two, st, undone: list, pts: np.ndarray, dref, tau: float) -> bool:
    """dlib on the undone face EdgeFace found closest, for a candidate that passed everything else
    (its chip only: a second-order check kept to one dlib view); the numbers are kept for the report."""
    if not undone:
        return True
    worst = undone[int(np.argmax(st.inversion_sims))]  # the inverse EdgeFace found closest
    d = two.dlib_distance(worst, pts, dref, full=False)
    st.inversion = (d, st.inversion[1])
    if d < tau:
        st.inversion_refused += 1
        return False
    return True
