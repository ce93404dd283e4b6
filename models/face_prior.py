"""A statistical face-appearance prior learned from public-domain portraits (models/data/face_prior.npz).

The appearance of a face is split, in a shape-free frame, into shading and reflectance:

    I = S * R,   S = low-pass of I with the features (eyes, brows, nostrils, lips) left out,
                 log R = log I - log S (per colour channel)

S is light, skin tone and colour: it stays the person's. log R is what a face's skin, lids, brows,
nose and mouth look like under neutral light: the appearance identity code z_id is its PCA code,
whitened (z_i = coefficient / its standard deviation, so z ~ N(0, I) over the portraits).

The shape-free frame ("canvas") is FaceMesh's canonical face seen from the front, scaled to
CANVAS px; a face is carried there and back by a piecewise-affine warp over its 468 landmarks
(models/face_bank.MeshWarp), so each canvas pixel is one place on every face.

The basis is fitted on glasses-free build portraits only (ideud.eval.portraits.build_names; see
tools/build/build_face_prior.py): a basis that has seen glasses draws ghost frames on faces that
have none. Fine detail (pores, grain) that the basis cannot hold comes from a bank of donor
residuals, always mixed from k >= MIN_DONORS of them, so that no donor is ever used alone.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.models import model_file
from ideud.models import meshhead as mh
from ideud.models import face_bank as fbk
from ideud.models.soft_mask import around, blur, blur_reach, fill, low_pass  # noqa: F401  (fp.blur, fp.fill, ... for callers)

CANVAS = (112, 128)  # (w, h) px of the shape-free frame
CANVAS_MM = 0.62  # canvas px per canonical mm: ~86 px between the cheek points
SIGMA_LOW = 0.08  # shading low-pass sigma, share of the face width (cheek to cheek)
SIGMA_FINE = 0.012  # below this share of the face width detail is "fine" (grain, pores)
MIN_DONORS = 3  # fine detail is never taken from fewer donors than this
GLASSES_SCORE = 0.14  # glasses_score above which a face wears glasses (by eye on the build portraits)
EPS = 4.0  # added to 8-bit intensities before logs (dark pixels carry noise, not reflectance)

R_EYE = ([33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133])
L_EYE = ([263, 466, 388, 387, 386, 385, 384, 398, 362], [263, 249, 390, 373, 374, 380, 381, 382, 362])
R_BROW = ([70, 63, 105, 66, 107], [46, 53, 52, 65, 55])
L_BROW = ([300, 293, 334, 296, 336], [276, 283, 282, 295, 285])
LIPS = ([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291], [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291])
INNER_LIPS = ([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308], [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
NOSTRILS = [98, 97, 2, 326, 327, 64, 294, 240, 460, 75, 305]
CHEEK_R, CHEEK_L = 234, 454


def ring(lm: np.ndarray, upper_lower) -> np.ndarray:
    up, lo = upper_lower
    return np.vstack([lm[up], lm[lo][::-1]])


def scaled(poly: np.ndarray, sx: float, sy: float) -> np.ndarray:
    c = poly.mean(0)
    return c + (poly - c) * [sx, sy]


def face_width(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[CHEEK_R, :2] - lm[CHEEK_L, :2]))


def face_region(lm: np.ndarray, shape, fw: float, shrink: float = 0.93) -> np.ndarray:
    """The face oval (forehead below the hairline), shrunk about its centre, feathered."""
    poly = fm.face_polygon(lm[:, :2])
    c = lm[:, :2].mean(0)
    return fill(shape, [c + (poly - c) * shrink], 0.03 * fw)


def feature_mask(lm: np.ndarray, shape, fw: float) -> np.ndarray:
    """Eyes, brows, nostrils and lips: left out of the shading (a dark eye would spread into the skin)."""
    f = max(0.6, 0.015 * fw)
    return np.maximum.reduce([
        fill(shape, [scaled(ring(lm, e), 1.2, 1.6) for e in (R_EYE, L_EYE)], f),
        fill(shape, [ring(lm, b) for b in (R_BROW, L_BROW)], f, grow=0.03 * fw),
        fill(shape, [cv2.convexHull(lm[NOSTRILS].astype(np.float32))[:, 0]], f, grow=0.015 * fw),
        fill(shape, [ring(lm, LIPS)], f, grow=0.025 * fw)])


def apertures(lm: np.ndarray, shape, fw: float) -> np.ndarray:
    """The eye openings and the open mouth: what shows through them (iris, gaze, teeth) is kept."""
    f = max(0.5, 0.008 * fw)
    eyes = fill(shape, [ring(lm, e) for e in (R_EYE, L_EYE)], f)
    mouth = fill(shape, [ring(lm, INNER_LIPS)], f)
    return np.clip(eyes + mouth, 0, 1)


def shading(img: np.ndarray, features: np.ndarray, sigma: float) -> np.ndarray:
    """Low-pass of `img` (float, HxWx3) by normalised convolution that leaves the features out."""
    w = np.clip(1.0 - features, 1e-3, 1.0)
    return low_pass(img * w[..., None], sigma) / low_pass(w, sigma)[..., None]


def log_reflectance(img: np.ndarray, lm: np.ndarray, sigma_frac: float = SIGMA_LOW) -> np.ndarray:
    """log R = log I - log S, HxWx3 float32, for an RGB image (uint8 or float 0..255)."""
    x = np.asarray(img, np.float32) + EPS
    fw = face_width(lm)
    s = shading(x, feature_mask(lm, x.shape[:2], fw), sigma_frac * fw)
    return (np.log(x) - np.log(np.maximum(s, 1.0))).astype(np.float32)


@functools.lru_cache(maxsize=1)
def canvas_landmarks() -> np.ndarray:
    """The 468 canonical vertices seen from the front, in canvas px."""
    c = mh.canonical()[:, :2]
    centre = (c.min(0) + c.max(0)) / 2
    return ((c - centre) * CANVAS_MM + np.array(CANVAS, float) / 2).astype(np.float64)


@functools.lru_cache(maxsize=1)
def canvas_warp() -> fbk.MeshWarp:
    """Backward maps from any face onto the canvas (its triangles are located once)."""
    return fbk.MeshWarp(canvas_landmarks(), CANVAS[::-1], step=1)


@functools.lru_cache(maxsize=1)
def canvas_mask() -> np.ndarray:
    """Canvas pixels the model holds (bool, HxW): the face oval, a little shrunk."""
    lm = canvas_landmarks()
    return face_region(lm, CANVAS[::-1], face_width(lm), shrink=0.97) > 0.5


def _hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(np.asarray(points, np.float32))[:, 0]


REGIONS = ("eyes", "brows", "nose", "mouth", "skin")


@functools.lru_cache(maxsize=1)
def canvas_regions() -> np.ndarray:
    """(len(REGIONS), masked pixels) soft weights of the face's parts on the canvas; they sum to 1."""
    lm = canvas_landmarks()
    shape = CANVAS[::-1]
    fw = face_width(lm)
    f = 0.03 * fw
    parts = [fill(shape, [scaled(ring(lm, e), 1.5, 2.6) for e in (R_EYE, L_EYE)], f),
             fill(shape, [ring(lm, b) for b in (R_BROW, L_BROW)], f, grow=0.04 * fw),
             fill(shape, [_hull(lm[[168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 64, 294, 48, 278, 115,
                                    344, 220, 440]])], f),
             fill(shape, [_hull(np.vstack([ring(lm, LIPS), lm[[205, 425, 200, 18]]]))], f)]
    parts = np.stack(parts)
    parts = parts / np.maximum(parts.sum(0), 1.0)
    skin = np.clip(1.0 - parts.sum(0), 0.0, 1.0)
    w = np.concatenate([parts, skin[None]])
    return w[:, canvas_mask()].astype(np.float32)


def _moustache(lm: np.ndarray) -> np.ndarray:  # above the upper lip, nose to mouth corners
    return np.vstack([lm[[61, 206, 203, 98, 97, 2, 326, 327, 423, 426, 291]], lm[LIPS[0]][::-1]])


def _beard(lm: np.ndarray) -> np.ndarray:  # below the lower lip to the chin
    return np.vstack([lm[LIPS[1]], lm[[422, 430, 394, 379, 378, 400, 377, 152, 148, 176, 149, 150, 169, 210, 202]]])


def cheek_hulls(lm: np.ndarray) -> list:  # the two cheeks, below the eyes, beside the nose
    return [_hull(lm[[117, 118, 101, 50, 205, 187, 123]]), _hull(lm[[346, 347, 330, 280, 425, 411, 352]])]


@functools.lru_cache(maxsize=1)
def lip_weights() -> tuple[np.ndarray, np.ndarray]:
    """(where the lips are, soft, 0..1; their averaging weights minus the cheeks', summing to 0), over
    the masked canvas pixels: the lip band between the outer and the inner lip line (an open mouth's
    teeth left out)."""
    lm = canvas_landmarks()
    shape = CANVAS[::-1]
    m = canvas_mask()
    band = fill(shape, [ring(lm, LIPS)], 1.0) * (1.0 - fill(shape, [ring(lm, INNER_LIPS)], 1.0))
    cheeks = fill(shape, cheek_hulls(lm))
    band, cheeks = band[m].astype(np.float32), cheeks[m].astype(np.float32)
    return band, band / band.sum() - cheeks / cheeks.sum()


@functools.lru_cache(maxsize=1)
def relief_mask() -> np.ndarray:
    """Where a new face's relief may be deepened (canvas image, float32 0..1): the face but
    its facial-hair zones (above the upper lip, the chin), the brows and the lips, feathered. Deepened
    there, the new face's own shadows drew moustaches on women and clean-shaven men and harsh brows."""
    lm = canvas_landmarks()
    shape = CANVAS[::-1]
    fw = face_width(lm)
    polys = [_moustache(lm), _beard(lm), ring(lm, LIPS), ring(lm, R_BROW), ring(lm, L_BROW)]
    out = fill(shape, polys, 0.03 * fw, grow=0.03 * fw)
    return (1.0 - out).astype(np.float32)


def lip_tone(vec: np.ndarray) -> np.ndarray:
    """The lips' colour against the cheeks' (3 log units, RGB) of a canvas log-R vector."""
    return lip_weights()[1] @ np.asarray(vec, np.float32).reshape(-1, 3)


TRAITS = ("moustache", "beard", "brows")  # sexually dimorphic / facial-hair traits a new face must share
# a candidate is compatible when each trait is within this many prior SDs of the person's: the
# moustache (at 1 SD women still got a visible shadow). Beard and brows are measured, not matched:
# matching them too (1.0, 2.0 SD) cost privacy (build portraits 200-259, guard on: 24 faces
# cleared at step 0 against 28 with the moustache alone; brows carry identity)
TRAIT_TOL = (0.6, float("inf"), float("inf"))
TRAIT_KEEP = 3  # fewer compatible candidates than this: the TRAIT_KEEP closest in traits are kept instead


@functools.lru_cache(maxsize=1)
def trait_weights() -> np.ndarray:
    """(len(TRAITS), D) weights: trait = weights @ canvas log-R vector, the region's darkness.

    Darkness = mean luminance (mean of the log channels) of the cheeks minus that of the region:
    above the upper lip (moustache), below the lower lip to the chin (beard), the brows. The lips
    themselves are left out (lipstick and an open mouth are not facial hair).
    """
    lm = canvas_landmarks()
    shape = CANVAS[::-1]
    m = canvas_mask()
    lips = fill(shape, [ring(lm, LIPS)], 0.0, grow=3)

    def weights(polys, grow: float = 0.0, minus: Optional[np.ndarray] = None) -> np.ndarray:
        a = fill(shape, polys, 1.0, grow)
        if minus is not None:
            a = a * (1.0 - minus)
        a = a[m]
        return a / a.sum()

    cheeks = weights(cheek_hulls(lm))
    regions = np.stack([weights([_moustache(lm)], minus=lips), weights([_beard(lm)], minus=lips),
                        weights([ring(lm, R_BROW), ring(lm, L_BROW)], grow=1)])
    w = np.repeat((cheeks - regions) / 3.0, 3, axis=1)  # per pixel RGB, interleaved like the vectors
    w.flags.writeable = False
    return w.astype(np.float32)


def region_contrast(vec: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """RMS of a canvas vector's deviation from the mean face, per region (REGIONS order)."""
    dev = (np.asarray(vec, np.float32) - mean).reshape(-1, 3)
    e = (dev * dev).mean(1)
    w = canvas_regions()
    return np.sqrt((w * e).sum(1) / np.maximum(w.sum(1), 1e-6))


def to_canvas(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A face carried onto the canvas (float32 RGB, canvas size)."""
    return canvas_warp().sample(np.asarray(image, np.float32), np.asarray(landmarks, np.float64)[:, :2])


def canvas_reflectance(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """log R of a face on the canvas, as one vector (masked canvas pixels x 3)."""
    return log_reflectance(to_canvas(image, landmarks), canvas_landmarks())[canvas_mask()].ravel()


def glasses_score(image: np.ndarray, landmarks: np.ndarray) -> float:
    """How strongly a face shows glasses frames: edge energy on the nose bridge and under the eyes.

    Skin there is smooth; a frame crosses the bridge and runs below each eye. Scored on the
    canvas so every face is measured at the same place and scale.
    """
    can = to_canvas(image, landmarks)
    y = np.log(can @ np.array([0.299, 0.587, 0.114], np.float32) + EPS)
    hp = y - blur(y, 2.0)
    lm = canvas_landmarks()
    shape = CANVAS[::-1]
    bridge = fill(shape, [cv2.convexHull(lm[[193, 417, 351, 122, 168, 6]].astype(np.float32))[:, 0]], 0, 2)
    below = []
    for idx in ([226, 31, 228, 229, 230, 231, 232, 233], [446, 261, 448, 449, 450, 451, 452, 453]):
        band = lm[idx]
        below.append(np.vstack([band, band[::-1] + [0, 7]]))
    under = fill(shape, below)
    e = hp * hp
    return float(np.sqrt((e * bridge).sum() / max(bridge.sum(), 1)) + np.sqrt((e * under).sum() / max(under.sum(), 1)))


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class FacePrior:
    mean: np.ndarray  # (D,) mean log R over the build portraits
    basis: np.ndarray  # (K, D) orthonormal components
    sd: np.ndarray  # (K,) standard deviation of each component's coefficient
    donor_codes: np.ndarray  # (N, K) whitened codes of the donors of fine detail
    donor_detail: np.ndarray  # (N, D) their fine-detail residual (log R above SIGMA_FINE)
    digest: str  # content hash of the arrays above (the model's identity)

    @property
    def k(self) -> int:
        return len(self.sd)

    def encode(self, log_r: np.ndarray) -> np.ndarray:
        """Whitened code z of a canvas log-R vector."""
        return ((np.asarray(log_r, np.float32) - self.mean) @ self.basis.T) / self.sd

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.mean + (np.asarray(z, np.float32) * self.sd) @ self.basis

    def donors_for(self, z: np.ndarray, k: int = MIN_DONORS) -> tuple[np.ndarray, np.ndarray]:
        """(indices, weights) of the k >= MIN_DONORS donors nearest to code z, weights equal.

        Equal weights of 1/sqrt(k) keep the mixed grain as strong as one donor's while no
        donor gives more than 1/sqrt(MIN_DONORS) of it.
        """
        if k < MIN_DONORS:
            raise ValueError(f"fine detail needs at least {MIN_DONORS} donors, not {k}")
        k = min(k, len(self.donor_codes))
        if k < MIN_DONORS:
            raise ValueError("the prior holds fewer donors than the k >= 3 rule needs")
        d = np.linalg.norm(self.donor_codes - np.asarray(z, np.float32), axis=1)
        idx = np.argsort(d, kind="stable")[:k]
        return idx, np.full(k, 1.0 / np.sqrt(k), np.float32)

    def detail(self, z: np.ndarray, k: int = MIN_DONORS) -> np.ndarray:
        idx, w = self.donors_for(z, k)
        return (w[:, None] * self.donor_detail[idx].astype(np.float32)).sum(0)

    @functools.cached_property
    def trait_axes(self) -> np.ndarray:
        """(len(TRAITS), K): trait(decode(z)) = trait_axes @ z * trait SD + const, so a code's traits
        cost a (T, K) product; each row scaled to unit norm, i.e. in SDs of the trait over the prior."""
        a = (trait_weights() @ self.basis.T) * self.sd
        return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-9)).astype(np.float32)

    def traits(self, vec: np.ndarray) -> np.ndarray:
        """The traits (darkness per TRAITS region) of a canvas log-R vector, in log units."""
        return trait_weights() @ np.asarray(vec, np.float32)

    def to_image(self, vec: np.ndarray) -> np.ndarray:
        """A canvas vector back to a canvas image (HxWx3 float32; 0 outside the mask)."""
        out = np.zeros(CANVAS[::-1] + (3,), np.float32)
        out[canvas_mask()] = np.asarray(vec, np.float32).reshape(-1, 3)
        return out


SAMPLE_FULL = 30  # components drawn at their full spread; later ones tapered (see sample_code)
SAMPLE_TAIL = 0.5  # spread of the last component


def sample_code(seed: int, k: int, draw: int = 0) -> np.ndarray:
    """A new face's code from the seed only: N(0, 1) per component, the minor ones tapered.

    The prior's minor components are each a faint face-wide pattern; drawn all at full spread they
    add up to doubled lid lines and blotches (ghost eyes) that no real face has.
    """
    taper = np.ones(k, np.float32)
    if k > SAMPLE_FULL:
        taper[SAMPLE_FULL:] = np.linspace(1.0, SAMPLE_TAIL, k - SAMPLE_FULL)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xFA7E, draw])
    return (rng.standard_normal(k) * taper).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _seeded_codes(seed: int, k: int, n: int) -> np.ndarray:
    """The `n` candidate codes of a seed (64 generators: ~6 ms), kept for the seed's other picks (each
    escalation level, the guard's second-pass inverse with its fixed seed). Read-only."""
    cands = np.stack([sample_code(seed, k, i) for i in range(n)])
    cands.flags.writeable = False
    return cands


def pick_farthest(z: np.ndarray, seed: int, k: int, candidates: int = 8, select_k: Optional[int] = None,
                  trait_axes: Optional[np.ndarray] = None, tol=None, keep: int = TRAIT_KEEP) -> int:
    """Index of the seeded candidate farthest from z (what target_code takes; a segment can carry it).

    With `trait_axes` (FacePrior.trait_axes) only candidates whose traits (moustache, beard, brow
    darkness) are within `tol` prior SDs of z's are considered, or, if fewer than `keep` are, the
    `keep` closest in traits (`tol`: one number or one per trait; None: TRAIT_TOL, which matches
    the moustache only; an infinite tolerance leaves that trait free). The portraits
    are mostly men: the farthest face alone gives women and clean-shaven men a moustache shadow and
    heavy brows, and takes bearded men's beards away. A pure function of z and the seed.
    """
    cands = _seeded_codes(int(seed), int(k), max(1, int(candidates)))
    z = np.asarray(z, np.float32)
    sk = select_k or k
    far = np.linalg.norm(cands[:, :sk] - z[:sk], axis=1)
    if trait_axes is not None and len(cands) > 1:
        tol = np.broadcast_to(np.asarray(TRAIT_TOL if tol is None else tol, np.float32), (len(trait_axes),))
        off = (np.abs((cands - z) @ np.asarray(trait_axes, np.float32).T) / tol).max(1)  # worst trait, in tolerances
        ok = off <= 1.0
        if ok.sum() < min(keep, len(cands)):
            ok = np.zeros(len(cands), bool)
            ok[np.argsort(off, kind="stable")[:keep]] = True
        far = np.where(ok, far, -np.inf)
    return int(np.argmax(far))


def target_code(z: Optional[np.ndarray], seed: int, sigma: float, k: int, candidates: int = 8,
                sigma_full: float = 0.25, select_k: Optional[int] = None, pick: Optional[int] = None,
                trait_axes: Optional[np.ndarray] = None) -> np.ndarray:
    """The new face's code for a person of code z under the track's seed.

    Draw `candidates` codes from the prior (seed only) and take the one farthest from z: the
    result is one of a few seeded random faces, so nothing of z survives in it but which one
    was picked (log2(candidates) bits), and running the mapping on its own output just picks
    another random face (no share of z is subtracted: a mirror of the output would bring it back).
    `select_k`: measure "far" on the leading components only; `trait_axes`: only among candidates
    that share z's facial-hair and brow traits (pick_farthest). `pick`: the candidate index chosen
    before (a segmented run carries the first segment's choice). σ < sigma_full blends from z
    toward it (σ = 0: z itself); at and above sigma_full (the default σ) z is discarded entirely.
    """
    if z is None:
        return sample_code(seed, k, 0)
    z = np.asarray(z, np.float32)
    if pick is None:
        pick = pick_farthest(z, seed, k, candidates, select_k, trait_axes)
    far = sample_code(seed, k, int(pick) % max(1, candidates))
    w = float(np.clip(sigma / sigma_full, 0.0, 1.0)) if sigma_full > 0 else 1.0
    return far if w >= 1.0 else (1.0 - w) * z + w * far


# ---------------------------------------------------------------- fit, save, load


def fit(log_rs: np.ndarray, k: int, donors: int = 48) -> dict:
    """PCA of the rows of `log_rs` (N, D); returns the arrays of a FacePrior.

    Deterministic: SVD of the centred data, each component's sign fixed so that its largest
    entry is positive; donors are the first `donors` rows (the caller orders them).
    """
    x = np.asarray(log_rs, np.float64)
    mean = x.mean(0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(k, len(s) - 1)
    vt = vt[:k]
    sign = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    vt = vt * sign[:, None]
    sd = s[:k] / np.sqrt(max(len(x) - 1, 1))
    coef = xc @ vt.T
    n = min(donors, len(x))
    residual = xc[:n] - coef[:n] @ vt
    fine = np.stack([_fine_band(r) for r in residual])
    return {"mean": mean.astype(np.float16), "basis": vt.astype(np.float16), "sd": sd.astype(np.float32),
            "donor_codes": (coef[:n] / sd).astype(np.float16), "donor_detail": fine.astype(np.float16)}


def _fine_band(vec: np.ndarray) -> np.ndarray:
    """The part of a canvas vector finer than SIGMA_FINE of the canvas face width."""
    img = np.zeros(CANVAS[::-1] + (3,), np.float32)
    m = canvas_mask()
    img[m] = vec.reshape(-1, 3)
    w = m.astype(np.float32)
    s = SIGMA_FINE * face_width(canvas_landmarks())
    low = blur(img * w[..., None], s) / np.maximum(blur(w, s), 1e-3)[..., None]
    return (img - low)[m].ravel()


ARRAYS = ("mean", "basis", "sd", "donor_codes", "donor_detail")


def digest(arrays: dict) -> str:
    """Content hash over the model's arrays (dtype, shape, bytes) in a fixed order."""
    return model_file.digest(arrays, ARRAYS)


def save(arrays: dict, path, meta: dict) -> str:
    """Write the model as an .npz whose bytes depend on its contents only (fixed zip dates)."""
    return model_file.save(arrays, ARRAYS, path, meta)


def load(path=None) -> FacePrior:
    arrays, stored = model_file.load(ARRAYS, path, "face_prior.npz", "face prior")
    return FacePrior(mean=arrays["mean"].astype(np.float32), basis=arrays["basis"].astype(np.float32),
                     sd=arrays["sd"].astype(np.float32), donor_codes=arrays["donor_codes"].astype(np.float32),
                     donor_detail=arrays["donor_detail"], digest=stored)


@functools.lru_cache(maxsize=1)
def default_prior() -> FacePrior:
    return load()
