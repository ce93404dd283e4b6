"""Are the real faces the false-face verifier drops identifiable? (`bench_false_faces.py --identify-lost`)

Each lost face, as the product decoded it, is embedded by EdgeFace xs (the guard's) and, where torch is
installed, EdgeFace xxs (a recognizer the guard never runs), aligned on the detector's own four points
(eyes, nose, mouth centre: the pipeline never fitted a mesh to a dropped find). It is compared with
the photos of all held-out people (their heads at 400 px, FaceMesh's points): the hard and heavy-blur
sets and the footage clip are made of those people, so a lost face that is identifiable matches its
own photo over the recognizer's calibrated "same person" threshold. PASCAL's people are not in the
gallery. Nothing is written but similarities.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from bench_face_prior import Embedder, SecondOpinion
from footage import portrait_head
from ideud.eval.portraits import held_out_names, portraits_dir
from ideud.models import edgeface as ef

# ArcFace's 112 px template at the detector's four points (the two mouth corners' mean for the mouth)
_TEMPLATE4 = np.vstack([ef.ARCFACE_112[:3], ef.ARCFACE_112[3:5].mean(0)])


def chip_on_points(rgb: np.ndarray, points4: np.ndarray) -> np.ndarray:
    """A 112 px ArcFace chip from the detector's four keypoints (least-squares similarity)."""
    m, _ = cv2.estimateAffinePartial2D(np.asarray(points4[:4], np.float32), _TEMPLATE4.astype(np.float32),
                                       method=cv2.LMEDS)
    return cv2.warpAffine(rgb, m, (ef.SIZE, ef.SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class Gallery:
    """The held-out people's photos, embedded by EdgeFace xs (and xxs where torch is installed)."""

    def __init__(self):
        self.emb = Embedder()
        self.xs = self.emb.edge
        try:
            self.second: Optional[SecondOpinion] = SecondOpinion(self.emb.marker, portraits_dir())
        except ImportError:  # no torch: xs only
            self.second = None
        people = range(len(held_out_names(portraits_dir())))
        heads = [portrait_head(i, 400) for i in people]
        xs = [self.emb.edge_embed(h) for h in heads]
        xxs = [self.second.embed(h) if self.second else None for h in heads]
        ok = [i for i in people if xs[i] is not None and (self.second is None or xxs[i] is not None)]
        self.people = len(ok)
        self.row = {person: k for k, person in enumerate(ok)}  # held-out person index -> gallery row
        self.g_xs = np.stack([xs[i] for i in ok])
        self.g_xxs = np.stack([xxs[i] for i in ok]) if self.second else None

    def best(self, rgb: np.ndarray, points4: np.ndarray, person: Optional[int] = None) -> dict:
        """The highest similarity of the face to any held-out person, per recognizer, and its threshold.
        With `person` (who the face is, where the set knows it): also the similarity to that person's
        photo and its rank among all of them (1: nobody is closer), and `identified`: over the
        threshold with the right person (a face blurred to something generic can pass the threshold
        with somebody else: "identifiable" counts that too)."""
        chip = chip_on_points(rgb, points4)
        sims = {"xs": self.g_xs @ self.xs.embed_chips(chip[None])[0]}
        out = {"xs": round(float(sims["xs"].max()), 3), "xs_threshold": self.xs.threshold("balanced")}
        if self.second is not None:
            sims["xxs"] = self.g_xxs @ self.second.embed_chip(chip)
            out["xxs"] = round(float(sims["xxs"].max()), 3)
            out["xxs_threshold"] = self.second.threshold
        out["identifiable"] = out["xs"] > out["xs_threshold"] or out.get("xxs", -1.0) > out.get("xxs_threshold", 1.0)
        row = self.row.get(person) if person is not None else None
        if row is not None:
            for name, s in sims.items():
                out[f"{name}_own"] = round(float(s[row]), 3)
                out[f"{name}_own_rank"] = int((s > s[row]).sum()) + 1
            out["identified"] = any(out[f"{name}_own"] > out[f"{name}_threshold"] for name in sims)
        return out
