"""The two recognizers the privacy guard asks, each on several views of a face, worst view kept.

dlib's ResNet (models/recognizer.py: L2 distance, same person under 0.6) and EdgeFace
(models/edgeface.py: cosine similarity, same person over its calibrated threshold) share nothing:
architecture, training set and loss all differ. A face the guard passes must be far from the
person for both, on every view below; a candidate that fools one view of one network does not
pass.

Views (what a re-encode, a re-crop or a mirror by whoever holds the output would show):

    EdgeFace (112x112 ArcFace chips, one onnxruntime batch for every view of every face):
        the chip, its mirror, the template scaled +5 %, scaled -5 % and shifted 2 px,
        a JPEG re-encode (quality 50)
    dlib (150x150 chips; its ResNet runs on onnxruntime, ~10 ms a chip, dlib-bin's own ~80 ms is the fallback):
        the chip, its mirror, the 5 points spread by 5 % (a tighter crop) then JPEG q50

Points: the 468 FaceMesh points of the face (pixels); dlib takes FACEMESH_POINTS5, EdgeFace the
eye centres / nose tip / mouth corners of `face_align.five_points_from_facemesh`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from ideud.models import edgeface as ef
from ideud.models.dlib_resnet_onnx import dlib_embedder
from ideud.models.face_align import five_points_from_facemesh
from ideud.models.recognizer import FACEMESH_POINTS5, THRESHOLD, FaceRecognizer, default_recognizer

JPEG_QUALITY = 50
EDGE_VIEWS = ("chip", "mirror", "scale+5%", "scale-5%+shift", "jpeg50")
DLIB_VIEWS = ("chip", "mirror", "tighter+jpeg50")


def _jpeg(rgb: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def _wide(rgb: np.ndarray, p5: np.ndarray) -> np.ndarray:
    """The 0.95-scale view, shifted: it takes in more of the outline around the face."""
    return ef.align(rgb, p5, scale=0.95, shift=(2.0, -2.0))


def edge_views(rgb: np.ndarray, landmarks: np.ndarray, full=True) -> list[np.ndarray]:
    """All views; full=False: the chip only; full="quick": the chip and its mirror (a search's first pass);
    full="seen": those and the +5 % scale (at the points FaceMesh finds on an output: the worst view
    there, 0.18 against the chip's 0.146 over a 720p clip's face, where the judge matched it);
    full="wide": the chip and the 0.95 scale (a look at a small face drawn without its surroundings)."""
    p5 = five_points_from_facemesh(landmarks)
    base = ef.align(rgb, p5)
    if not full:
        return [base]
    if full == "wide":
        return [base, _wide(rgb, p5)]
    views = [base, np.ascontiguousarray(base[:, ::-1])]
    if full == "quick":
        return views
    views.append(ef.align(rgb, p5, scale=1.05))
    if full == "seen":
        return views
    return views + [_wide(rgb, p5), _jpeg(base)]


def dlib_views(rec: FaceRecognizer, rgb: np.ndarray, landmarks: np.ndarray, full: bool = True) -> list[np.ndarray]:
    pts = np.asarray(landmarks, np.float64)[list(FACEMESH_POINTS5), :2]
    base = rec.chip(rgb, points5=pts)
    if not full:
        return [base]
    centre = pts.mean(0)
    tighter = rec.chip(rgb, points5=centre + 1.05 * (pts - centre))
    return [base, np.ascontiguousarray(base[:, ::-1]), _jpeg(tighter)]


class TwoRecognizers:
    """dlib + EdgeFace, loaded lazily (the default instances are shared per process)."""

    def __init__(self, dlib: Optional[FaceRecognizer] = None, edge: Optional[ef.EdgeFace] = None):
        self.dlib = dlib or default_recognizer()
        # the same ResNet on onnxruntime (~6x faster, GIL released); dlib's own if that fails
        self.dlib_embed = dlib_embedder(self.dlib)
        self.edge = edge or ef.default_edgeface()
        self.dlib_chips = 0
        self.edge_chips = 0

    def person(self, rgb: np.ndarray, landmarks: np.ndarray,
               edge: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """The person's (dlib, EdgeFace) embeddings from the unmirrored chip: memory only. `edge`: the
        EdgeFace one, already embedded from the same chip (not embedded again)."""
        d = self.dlib_embed(dlib_views(self.dlib, rgb, landmarks, full=False))[0]
        e = self.chip_embeddings(np.stack(edge_views(rgb, landmarks, full=False)))[0] if edge is None else edge
        self.dlib_chips += 1
        return d, e

    def edge_similarity(self, faces: Sequence[tuple], refs: np.ndarray, full=True,
                        chip_embeddings: Optional[np.ndarray] = None, embeddings: bool = False):
        """Highest cosine similarity over views and references, per face of `faces` [(rgb, landmarks)];
        every view of every face goes through EdgeFace in one batch. `chip_embeddings`: the faces'
        chips (view 0) already embedded (a search's quick pass), (len(faces), DIM): not embedded
        again. `embeddings`: also return every view's embedding, (len(faces), views, DIM)."""
        if not faces:
            return (np.zeros(0), np.zeros((0, 0, ef.DIM), np.float32)) if embeddings else np.zeros(0)
        chips = [edge_views(rgb, lm, full) for rgb, lm in faces]
        n = len(chips[0])
        skip = 1 if chip_embeddings is not None else 0
        e = (self.chip_embeddings(np.stack([c for cs in chips for c in cs[skip:]])) if n > skip
             else np.zeros((0, ef.DIM), np.float32))
        e = e.reshape(len(faces), n - skip, ef.DIM)
        if skip:
            e = np.concatenate([np.asarray(chip_embeddings, np.float32).reshape(len(faces), 1, ef.DIM), e], 1)
        refs = np.asarray(refs, np.float32).reshape(-1, ef.DIM)
        refs = refs / np.maximum(np.linalg.norm(refs, axis=1, keepdims=True), 1e-12)
        sims = (e.reshape(-1, ef.DIM) @ refs.T).reshape(len(faces), n * len(refs)).max(1).astype(np.float64)
        return (sims, e) if embeddings else sims

    def chip_embeddings(self, chips: np.ndarray) -> np.ndarray:
        """EdgeFace of aligned chips (`edge_views(..., full=False)[0]` each), one batch: (len(chips), DIM), unit length."""
        e = self.edge.embed_chips(np.asarray(chips))
        self.edge_chips += len(e)
        return e

    def dlib_distance(self, rgb: np.ndarray, landmarks: np.ndarray, refs: np.ndarray, full: bool = True,
                      stop_below: Optional[float] = None) -> float:
        """Lowest L2 distance over views and references; view by view (a view closer than
        `stop_below` already fails the face: the rest are not run)."""
        refs = np.asarray(refs, np.float64).reshape(-1, 128)
        worst = np.inf
        for chip in dlib_views(self.dlib, rgb, landmarks, full):
            e = self.dlib_embed([chip])[0].astype(np.float64)
            self.dlib_chips += 1
            worst = min(worst, float(np.linalg.norm(refs - e, axis=1).min()))
            if stop_below is not None and worst < stop_below:
                break
        return worst

    def measure(self, rgb: np.ndarray, landmarks: np.ndarray, dlib_refs, edge_refs,
                edge_limit: Optional[float] = None, dlib_stop: Optional[float] = None) -> tuple[Optional[float], float]:
        """(worst dlib distance, worst EdgeFace similarity) of one face. EdgeFace (cheap) goes first;
        over `edge_limit` the face already fails and dlib (the costlier) is not run: distance None;
        under `dlib_stop` at one view, the other dlib views are not run either."""
        s = float(self.edge_similarity([(rgb, landmarks)], edge_refs)[0])
        if edge_limit is not None and s > edge_limit:
            return None, s
        return self.dlib_distance(rgb, landmarks, dlib_refs, stop_below=dlib_stop), s

    @staticmethod
    def among_different_people(distance: Optional[float], similarity: float, tau: float = THRESHOLD,
                               edge_max: Optional[float] = None) -> bool:
        """Both recognizers place the face among different people (dlib not run counts as a match)."""
        edge_max = ef.default_edgeface().threshold("balanced") if edge_max is None else edge_max
        return distance is not None and distance >= tau and similarity <= edge_max
