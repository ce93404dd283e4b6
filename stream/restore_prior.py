"""Step II from the face prior: a new face that belongs to nobody (`--restorer prior`).

    out = S(person) * exp(log R(new)) + grain(person)

- S: the warped face's own shading, a low-pass (SIGMA_LOW x face width) of its skin only, the
  features left out (models/face_prior.shading): light, skin tone and colour stay the person's
  (hair, collar and background no longer bleed in at the escalated levels' wide scales: they
  made the face greyer and bluer than its own neck and darkened it under the hairline);
- log R(new): the reflectance of a new face, decoded from the appearance prior
  (models/face_prior.py) at a target code, plus fine detail mixed from k >= 3 donors;
- grain: the warped face's finest band (sensor noise, compression), capped at a few times its
  noise level (a mole or a wrinkle's edge is the person's, not the picture's), so the face
  matches the frame around it. A face bigger than WORK_FACE_PX is drawn at that width and the
  change added at full size: the band finer than that is capped likewise where the face is drawn
  (before the fifty-first session it passed whole, the person's fine lines over the new face).

The new face fades out over the upper forehead (`_forehead_fade`): the face oval stops across the
forehead, where it left a horizontal seam. Above the brows its reflectance is never darker than the
new skin by more than models/prior_forehead.FOREHEAD_FLOOR: the prior's blur of higher brows and
hairlines drew smudges there. (Also setting its mean log colour on skin to the person's
took the guard's last candidate for one track of tools/bench/bench_speed.py's 4-person clip under
dlib's bar, obfuscating it throughout: not kept; skin-only shading alone holds the tone within
tests/test_prior_skin_tone.py's bounds.)

The new face's contrast is matched per part (eyes, brows, nose, mouth, skin) to the person's,
never raised above its own: a smooth young face does not get an old face's furrows. Its relief
(luminance against the shading) is then deepened toward the contrast the person's face has, up to
RELIEF_GAIN_MAX, outside the facial-hair zones, brows and lips (`_deepened`): the prior's face is
smoother than a real one, and it came out flat, paler and more orange than its own neck. Its lips
take the hue and saturation of the person's against their cheeks (lipstick came out pale), not
their darkness: with it, build portraits 0-99, guard off, EdgeFace same-person went 52 -> 57 of 100
(hue only: 52). Where the perturbed mesh folds (a nose pushed into the lip flips triangles), the new
reflectance and the grain are smoothed over instead of coming out as shreds.

The target code (face_prior.target_code): M candidates drawn from the prior with the track's
seed, the one farthest from the person's own code taken among those that share its moustache
darkness (face_prior.pick_farthest, TRAIT_TOL: the portraits are mostly men, and the farthest
alone drew moustache shadows on women and clean-shaven men). The person's code is used only for
that choice and is forgotten; the new face is one of a few seeded random faces, so neither an
inverse of the mapping nor a second pass of the tool can lead back to the original's appearance. The
choice is made once per track (the first frame that has a fit) and kept, so one track shows one
new face for its whole life; a segmented batch run carries the index of that choice to the later
segments (`picks_of` / `preset_picks`, stream/batch/), as it carries the ID stage's shape pick.

What stays the person's: shading and skin tone; what shows through the eye openings (iris colour
and gaze: eye colour is a weak cue for recognisers, and replacing the iris moves the gaze and made
brown eyes of blue ones) and the open mouth (teeth, tongue: the expression); hair that falls over
the forehead, a fringe's tips (models/forehead_hair.py: they were smeared into skin); glasses, which the
glasses-free prior cannot hold, where the person wears them (kept like an occluder: only what the
prior cannot explain, on a band around the eyes and across the bridge), at levels under
GLASSES_BELOW_LEVEL only. That band holds the person's eyelids, creases and brows behind the frames
as well; from the guard's level 3 the new face is drawn there too (held-out portraits, guard on:
obfuscated 6 -> 4 of 100, surroundings blurred 6 -> 3, EdgeFace-xxs 4 -> 4), and where the frames were
(`_glasses_band(wide=True)`) without the person's shading and grain, which drew a ghost of them
(fifty-third session; held-out: obfuscated 6 -> 4 again, the third opinion 21 -> 20 of the rendered).

`RestoreItem.level` (the privacy guard's escalation) moves the new face further: from level 1 the
shading is taken at a larger scale each level (LEVEL_SIGMA_LOW: more of the face's mid-low
frequencies come from the new face, less of the person's). No level subtracts the person's code
(an anti-face): a mirror of the output would undo that, and the guard's inversion check refused
~2.5x more such candidates for no fewer obfuscated faces (build portraits).

`sigma` is the σ of `--scale` (default 0.25): below 0.25 the code is blended from the person's
toward the new face, at 0.25 and above the person's code is discarded; the shading scale at level 0
follows it too (FULL_SIGMA_LOW at 0.25, SIGMA_LOW at 0). The pipeline builds restorers by name
without arguments, so today the restorer always runs at its default σ.

Cost: ~7-8 ms per face-frame of CPU once a track has its new face (640x360 clip of
tools/bench/bench_speed.py): the new face's canvas and, for glasses, where the frames sit on the
canvas are made once per track key and only warped after (kept in the restorer, dropped by
`forget`); a track's first frame (and each new seed the privacy guard tries) costs ~5 ms more (the
fit); faces above WORK_FACE_PX are worked at that width. The skin-only shading and the forehead fade
add ~1-2 ms (measured on 275x225 portrait crops; bench_speed not re-run since), the fringe ~0.3 ms.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Optional, Sequence

import cv2
import numpy as np

from ideud.models import face_bank as fbk
from ideud.models import face_prior as fp
from ideud.models import facemesh as fm
from ideud.models import forehead_hair as fh
from ideud.models import prior_forehead as pf
from ideud.stream.types import RestoreItem

LEVEL_SIGMA_LOW = (fp.SIGMA_LOW, 0.15, 0.18, 0.21, 0.24)  # shading scale per escalation level (level 0: see FULL_SIGMA_LOW)
# level 0's scale at the full sigma: more of the face's mid-low frequencies from the new face (chosen on
# build portraits; held-out, guard off: EdgeFace same-person 56 -> 47 of 100, dlib mean 0.701 -> 0.713).
# It follows sigma from SIGMA_LOW at 0, where the person's own code is re-rendered as it was
FULL_SIGMA_LOW = 0.12
SIGMA_FULL = 0.25  # the default --scale, at and above which the person's code is wholly replaced
GRAIN = 0.009  # the person's own grain: below this share of the face width
WORK_FACE_PX = 120.0  # bigger faces are re-synthesised at this face width, the change added at full size
CONTRAST_RANGE = (0.35, 1.0)  # the new face's contrast per region, relative to its own: matched to the person's
LIP_SHIFT_MAX = 0.8  # log units per channel: lipstick moved the lips by up to ~0.7 from the prior's (build portraits)
# the new face's relief may be deepened this much toward the person's contrast (_deepened): at 2.2 the
# eye sockets looked drawn; build portraits 0-99, guard off, EdgeFace same-person 52 -> 49 / 45 / 44
# of 100 at 1.6 / 1.8 / 2.2, xxs 53 -> 49 / 49 / 49 (docs/measured.md, thirty-fifth session)
RELIEF_GAIN_MAX = 1.8
HIGHLIGHT = 0.1  # the new reflectance may brighten the person's shading by e^0.1 (+10 %) at most
FADE_FROM = 0.3  # the new face fades out over the upper (1 - FADE_FROM) of the forehead the oval holds
# the person's glasses are kept below this escalation level only: what the prior cannot explain on
# the band around the eyes is the frames *and* the person's own eyelids, creases and brows behind
# them (the keep mask covers the whole eye band), and EdgeFace reads a face by its eyes first
GLASSES_BELOW_LEVEL = 3
WIDE_MISS = (0.05, 0.10)  # from it, where the frames were: the prior's reconstruction misses this much
# what a track's items fix, once each (per key): taken back for provisional items the guard did not use
_FIXED_PER_TRACK = ("_targets", "_gains", "_lip_tones", "_relief", "_wears_glasses", "_glasses_frames", "_picks", "_canvases")
TRACKS_KEPT = 512  # per-track choices remembered (oldest forgotten first)


def _unfold(x: np.ndarray, mx: np.ndarray, my: np.ndarray, fw: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth over where the mesh folds (a perturbed nose pushed into the lip flips triangles).

    There the backward map runs backwards (negative Jacobian) or squeezes a wide canvas area into
    a pixel (or the reverse): the canvas would come out as jagged shreds. Those pixels take their
    neighbours' values; returns (x smoothed there, the soft mask of the fold).
    """
    gxx, gxy = np.gradient(mx, axis=1), np.gradient(mx, axis=0)
    gyx, gyy = np.gradient(my, axis=1), np.gradient(my, axis=0)
    det = gxx * gyy - gxy * gyx
    med = max(float(np.median(det[det > 0])) if (det > 0).any() else 1.0, 1e-6)
    ok = (det > 0.15 * med) & (det < 4.0 * med)
    if ok.all():
        return x, np.zeros(x.shape[:2], np.float32)
    bad = cv2.dilate((~ok).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    soft = fp.blur(bad.astype(np.float32), 1.0)
    # the fill is only used where `soft` is not 0: blurred there alone, with the blur's whole reach
    # around it (its values there are the same as blurring everything)
    ys, xs = np.nonzero(soft)
    win = fp.around((xs.min(), ys.min()), (xs.max(), ys.max()), fp.blur_reach(0.06 * fw), x.shape)
    good = ~bad[win]
    w = fp.blur(good.astype(np.float32), 0.06 * fw)
    fill = fp.blur(x[win] * good[..., None], 0.06 * fw) / np.maximum(w, 1e-3)[..., None]
    out = x.copy()
    a = soft[win][..., None]
    out[win] = x[win] * (1.0 - a) + fill * a
    return out, soft


class PriorRestorer:
    """New appearance from the face prior; see the module docstring."""

    name = "prior"
    on_gpu = False
    cpu_heavy = True  # ~10 ms of Python and numpy a face: worth a process of its own (restore_processes.py)
    max_batch = 16
    settles = True  # provisional items' choices can be taken back (`settle`)

    # 64 candidates (was 32): only the trait-compatible ones compete, and 32 left too few far ones
    # (build portraits: more same-person matches); the pick then holds 6 bits of the person, not 5
    def __init__(self, sigma: float = 0.25, candidates: int = 64, donors: int = fp.MIN_DONORS,
                 prior: Optional[fp.FacePrior] = None, select_k: Optional[int] = None, match_traits: bool = True):
        if donors < fp.MIN_DONORS:
            raise ValueError(f"fine detail needs at least {fp.MIN_DONORS} donors, not {donors}")
        self.sigma = float(sigma)
        self.candidates = int(candidates)
        self.donors = int(donors)
        self.select_k = select_k
        self.match_traits = bool(match_traits)  # pick among candidates that share the person's moustache darkness (fp.TRAIT_TOL)
        self.prior = prior if prior is not None else fp.default_prior()
        self._targets: OrderedDict = OrderedDict()  # (track, seed, level) -> target code (a seeded face)
        self._gains: dict = {}  # (track, seed, level) -> contrast per face region (fp.REGIONS)
        self._relief: dict = {}  # (track, seed, level) -> relief gain
        self._lip_tones: dict = {}  # (track, seed, level) -> the person's lip colour against the cheeks (3 numbers)
        self._wears_glasses: dict = {}  # (track, seed) -> bool
        self._glasses_frames: OrderedDict = OrderedDict()  # track -> its glasses frames on the canvas (_glasses_canvas)
        self._picks: dict = {}  # (track, seed, level) -> index of the seeded candidate taken
        self._canvases: dict = {}  # (track, seed, level) -> (its target, the new face on the canvas)
        self.log: list[str] = []  # what the restorer did, for reports: no code of anybody in it
        self._provisional: dict = {}  # track -> [(cache, key)] fixed by provisional items, not yet settled

    def warmup(self) -> None:
        fp.canvas_warp()

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        return [self._provisionally(it) if it.provisional else self._scaled(it) for it in items]

    def _provisionally(self, it: RestoreItem) -> np.ndarray:
        """Restore a provisional item, noting what it fixed for its track that was not fixed before."""
        before = {name: set(getattr(self, name)) for name in _FIXED_PER_TRACK}
        out = self._scaled(it)
        created = [(name, key) for name in _FIXED_PER_TRACK for key in set(getattr(self, name)) - before[name]]
        self._provisional.setdefault(int(it.track_id), []).extend(created)
        return out

    def settle(self, track_id: int, keep: bool) -> None:
        """The track's provisional items were used (`keep`: what they fixed stays, as if asked plainly)
        or not (it is taken back: the next item with those keys chooses afresh, from its own frame).
        What a provisional item pushed out of the caches (over TRACKS_KEPT keys) is not brought back."""
        for name, key in self._provisional.pop(int(track_id), []):
            if not keep:
                getattr(self, name).pop(key, None)

    def target(self, it: RestoreItem) -> np.ndarray:
        """The track's new-face code, fixed at its first fit (per escalation level)."""
        level = self._level(it)
        key = (int(it.track_id), int(it.seed), level)
        t = self._targets.get(key)
        if t is None:
            own = fp.canvas_reflectance(it.image, it.landmarks)
            z = self.prior.encode(own)
            pick = self._picks.get(key)
            if pick is None:
                pick = self._picks[key] = fp.pick_farthest(z, it.seed, self.prior.k, self.candidates, self.select_k,
                                                           self._trait_axes())
            t = fp.target_code(z, it.seed, self.sigma, self.prior.k, self.candidates,
                               select_k=self.select_k, pick=pick)
            # only how much contrast each part of the face has is kept (5 numbers): a smooth young
            # face does not get an old face's furrows, nor a woman a man's beard shadow
            new = fp.region_contrast(self.prior.decode(t), self.prior.mean)
            gains = np.clip(fp.region_contrast(own, self.prior.mean) / np.maximum(new, 1e-4), *CONTRAST_RANGE)
            # and the lips' colour (lipstick, or the person's own against their skin: 3 numbers): the
            # prior's lips, mostly men's, came out pale on a face that had red lips
            lips = fp.lip_tone(own)
            del z, own  # the person's own code is not kept
            self._targets[key] = t
            self._gains[key] = gains.astype(np.float32)
            self._lip_tones[key] = lips.astype(np.float32)
            if len(self._targets) > TRACKS_KEPT:
                self._drop(next(iter(self._targets)))
            self.log.append(f"track {key[0]}: new face chosen from {self.candidates} seeded candidates (level {level})")
        return t

    def _trait_axes(self) -> Optional[np.ndarray]:
        return self.prior.trait_axes if self.match_traits else None

    def picks_of(self, track_id: int) -> dict:
        """{"seed:level": candidate index} the track chose (indices of seeded draws, no code of anybody)."""
        # a copy first: the restore worker thread may add a pick meanwhile (stream/relink.py asks from the main one)
        return {f"{k[1]}:{k[2]}": p for k, p in list(self._picks.items()) if k[0] == track_id}

    def preset_picks(self, track_id: int, picks: dict) -> None:
        """Take these choices for the track (a segment carrying an earlier segment's picks)."""
        for key, p in picks.items():
            seed, level = (int(v) for v in key.split(":"))
            self._picks[(int(track_id), seed, level)] = int(p)

    @staticmethod
    def _level(it: RestoreItem) -> int:
        return min(max(int(it.level), 0), len(LEVEL_SIGMA_LOW) - 1)

    def forget(self, track_id: int) -> None:
        # every cache's keys, not only the targets': a subclass's own target() (the guard's undo) fixes
        # none, and the relief and glasses it left would serve the next face of that track id
        for key in {k for cache in self._keyed() for k in cache if k[0] == track_id}:
            self._drop(key)
        for key in [k for k in self._wears_glasses if k[0] == track_id]:
            del self._wears_glasses[key]
        self._glasses_frames.pop(int(track_id), None)
        self._provisional.pop(int(track_id), None)

    def _keyed(self) -> tuple:
        """The caches keyed by (track, seed, level)."""
        return self._targets, self._picks, self._gains, self._lip_tones, self._relief, self._canvases

    def _drop(self, key: tuple) -> None:
        """Forget what one (track, seed, level) key fixed."""
        for cache in self._keyed():
            cache.pop(key, None)

    def _scaled(self, it: RestoreItem) -> np.ndarray:
        lm = np.asarray(it.landmarks, np.float64)[:, :2]
        fw = fp.face_width(lm)
        if fw < 8 or min(it.image.shape[:2]) < 8:
            return it.image
        k = WORK_FACE_PX / fw
        if k >= 1.0:
            return _blended(*self._drawn(it, lm)[:3])
        h, w = it.image.shape[:2]
        size = (max(8, round(w * k)), max(8, round(h * k)))
        sk = np.array([size[0] / w, size[1] / h])
        small = cv2.resize(it.image, size, interpolation=cv2.INTER_AREA)
        img, new, a, gone = self._drawn(RestoreItem(image=small, original=small, mask=cv2.resize(it.mask, size),
                                              landmarks=lm * sk, track_id=it.track_id, seed=it.seed, level=it.level),
                                  lm * sk, full=it)
        small_f = small.astype(np.float32)
        change = cv2.resize(_blended(img, new, a).astype(np.float32) - small_f, (w, h), interpolation=cv2.INTER_LINEAR)
        full = it.image.astype(np.float32)
        # the person's detail finer than the work size passed into the new face whole (a mole, a
        # wrinkle's or an eyelid's edge); where the face is drawn it passes as the grain does, capped
        drawn = cv2.resize(a[..., 0], (w, h), interpolation=cv2.INTER_LINEAR)
        x, y, bw, bh = cv2.boundingRect((drawn > 0).astype(np.uint8))
        if bw > 0 and bh > 0:  # (only where it is drawn: ~2 ms a 720p face over the whole crop)
            win = np.s_[y:y + bh, x:x + bw]
            fine = full[win] - cv2.resize(small_f, (w, h), interpolation=cv2.INTER_LINEAR)[win]
            cap = _noise_cap(fine[::3, ::3][drawn[win][::3, ::3] > 0.5])
            kept = np.clip(fine, -cap, cap)
            if gone is not None:  # where glasses were, none of the person's fine detail
                kept *= 1.0 - cv2.resize(gone, (w, h), interpolation=cv2.INTER_LINEAR)[win][..., None]
            change[win] -= drawn[win][..., None] * (fine - kept)
        return np.clip(full + change + 0.5, 0, 255).astype(np.uint8)

    def _shading_scale(self, level: int) -> float:
        """The shading low-pass (share of the face width) at an escalation level and this sigma."""
        if level > 0:
            return LEVEL_SIGMA_LOW[level]
        w = float(np.clip(self.sigma / SIGMA_FULL, 0.0, 1.0))
        return LEVEL_SIGMA_LOW[0] + w * (FULL_SIGMA_LOW - LEVEL_SIGMA_LOW[0])

    def _drawn(self, it: RestoreItem, lm: np.ndarray, full: Optional[RestoreItem] = None) -> tuple:
        """(the crop as float, the new face drawn on it, where it is drawn (h, w, 1)): `_blended` mixes them."""
        t = self.target(full if full is not None else it)
        shape = it.image.shape[:2]
        fw = fp.face_width(lm)
        img = it.image.astype(np.float32)
        level = self._level(it)
        x = img + fp.EPS
        key = (int(it.track_id), int(it.seed), level)
        new_canvas = self._new_canvas(key, t)
        warp = fbk.MeshWarp(lm, shape, step=2)
        can_lm = fp.canvas_landmarks()
        # a highlight in the new face's reflectance is its portrait's studio light, not its skin:
        # on top of the person's own light it burns an orange patch on brow ridge and forehead
        mx, my = warp.maps(can_lm)
        log_r = np.minimum(cv2.remap(new_canvas, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), HIGHLIGHT)
        log_r, fold = _unfold(log_r, mx, my, fw)
        oval = fp.face_region(lm, shape, fw)  # the same mask several times below: made once
        region = oval > 0.5
        drawn = oval * _forehead_fade(lm, shape)
        hair = fh.hair_mask(img, lm, drawn, fw)  # a fringe over the forehead stays the person's
        # the shading is taken from the face's skin only: at the escalated levels' wide scales the
        # background, hair and collar bled in (a grey or blue cast, a dark band under the hairline)
        skin = oval * (1.0 - fp.feature_mask(lm, shape, fw)) * (1.0 - hair)
        # glasses kept below GLASSES_BELOW_LEVEL; from it, where they were the person's light and
        # grain are not taken (the frames' lines came through the new face as a ghost)
        dropped = level >= GLASSES_BELOW_LEVEL
        glasses = self._glasses(it, lm, fw, shape, warp, gone=dropped)
        gone = glasses if dropped else None
        skin = skin if gone is None else skin * (1.0 - gone)
        s = fp.shading(x, 1.0 - skin, self._shading_scale(level) * fw)
        log_r = self._match_colourfulness(log_r, img, region)
        valid = cv2.remap(_canvas_valid(), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        grain = img - fp.blur(img, max(0.6, GRAIN * fw))
        # grain is noise-sized; what stands out of it (a wrinkle's edge, a mole, a fold of the warp)
        # is structure of the person's face, not of the picture: capped at a few times the noise level
        if region.any():
            cap = _noise_cap(grain[region])
            grain = np.clip(grain, -cap, cap)
        grain *= ((1.0 - fold) if gone is None else (1.0 - fold) * (1.0 - gone))[..., None]  # (the warp's shreds)
        log_r = self._deepened(key, log_r, x, s, grain, skin, mx, my)
        new = s * np.exp(log_r) - fp.EPS + grain
        keep = np.maximum(fp.apertures(lm, shape, fw) * (1.0 - fold), hair)  # a folded lip ring would keep the shreds
        if glasses is not None and not dropped:
            keep = np.maximum(keep, glasses)
        face = drawn * fp.blur(np.clip(valid * 1.2 - 0.2, 0, 1), 0.02 * fw)
        return img, new, (face * (1.0 - keep))[..., None], gone

    def _deepened(self, key: tuple, log_r, x, s, grain, skin, mx, my) -> np.ndarray:
        """The new face's relief (its luminance against the person's shading) deepened toward the
        contrast the person's face has there, by RELIEF_GAIN_MAX at most, outside fp.relief_mask's zones.

        The prior's new face is smoother than a real one and the shading scale leaves out the person's
        own mid-scale shadows: the face came out flat, its darks lifted, paler and more orange than
        its neck. The gain (one number of the person's: how much contrast their face has) is fixed on
        the key's first frame, so a track's face does not pulse.
        """
        g = self._relief.get(key)
        if g is None:
            m = skin > 0.5
            if np.count_nonzero(m) < 16:
                return log_r
            ls = np.log(np.maximum(s[m], 1.0)).mean(-1)
            own = np.log(x[m]).mean(-1) - ls
            new = np.log(np.maximum(s[m] * np.exp(log_r[m]) + grain[m], 1.0)).mean(-1) - ls
            g = self._relief[key] = float(np.clip(own.std() / max(float(new.std()), 1e-4), 1.0, RELIEF_GAIN_MAX))
        if g <= 1.0:
            return log_r
        w = cv2.remap(pf.relief_weights(), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return np.minimum(log_r + ((g - 1.0) * w * pf.channel_mean(log_r)[..., 0])[..., None], HIGHLIGHT)

    def _new_canvas(self, key: tuple, t: np.ndarray) -> np.ndarray:
        """The new face's reflectance on the canvas (decode, contrast, donor detail: ~1.5 ms), made
        once per track key; reused only for the very array the key's target is (a subclass's
        target() may return a new code every frame)."""
        held = self._canvases.get(key)
        if held is not None and held[0] is t:
            return held[1]
        gains = self._gains.get(key, np.ones(len(fp.REGIONS), np.float32))  # none: a subclass's own target
        gain = gains @ fp.canvas_regions()  # per canvas pixel
        dev = (self.prior.decode(t) - self.prior.mean).reshape(-1, 3) * gain[:, None]
        vec = self.prior.mean + dev.ravel() + self.prior.detail(t, self.donors)
        lips = self._lip_tones.get(key)
        if lips is not None:  # the new lips take the person's hue against the cheeks
            band = fp.lip_weights()[0]
            shift = np.clip(lips - fp.lip_tone(vec), -LIP_SHIFT_MAX, LIP_SHIFT_MAX)
            shift = shift - shift.mean()  # their hue and saturation, not their darkness (a cue: below)
            vec = (vec.reshape(-1, 3) + band[:, None] * shift).ravel()
        canvas = pf.without_smudges(self.prior.to_image(vec))
        if self._targets.get(key) is t:
            canvas.flags.writeable = False
            self._canvases[key] = (t, canvas)
        return canvas

    @staticmethod
    def _match_colourfulness(log_r: np.ndarray, img: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Give the new reflectance no more colour variation than the person's face has (`region`:
        fp.face_region > 0.5). A grey-scale or faded picture must not come out with pink lips and blue eyes.
        """
        if np.count_nonzero(region) < 16:
            return log_r
        own = np.log(img[region] + fp.EPS)
        own_c = own - pf.channel_mean(own)
        new_r = log_r[region]
        new_c = new_r - pf.channel_mean(new_r)
        k = float(np.clip(own_c.std() / max(new_c.std(), 1e-4), 0.0, 1.0))
        if k >= 1.0:
            return log_r
        grey = pf.channel_mean(log_r)
        return grey + (log_r - grey) * k

    def _glasses(self, it, lm, fw, shape, warp, gone: bool = False) -> Optional[np.ndarray]:
        """Where the person's glasses frames are (soft mask; `gone`: wider, where they were), if they
        wear glasses; else None. The glasses-free prior cannot explain a frame: what its reconstruction
        of the person misses, on a band around the eyes and across the bridge, is the frame."""
        key = (int(it.track_id), int(it.seed))
        wears = self._wears_glasses.get(key)
        if wears is None:  # decided once per track, on its first frame
            wears = self._wears_glasses[key] = fp.glasses_score(it.image, lm) > fp.GLASSES_SCORE
            if len(self._wears_glasses) > TRACKS_KEPT:
                self._wears_glasses.pop(next(iter(self._wears_glasses)))
        if not wears:
            return None
        # where the frames sit on the canvas is the person's, not the frame's: found on the track's
        # first frame that needs it (the prior's encode and decode, ~5 ms) and only warped after
        frame = self._glasses_frames.get(int(it.track_id))
        if frame is None:
            frame = self._glasses_frames[int(it.track_id)] = self._glasses_canvas(it.image, lm)
            if len(self._glasses_frames) > TRACKS_KEPT:
                self._glasses_frames.popitem(last=False)
        mask = warp.sample(frame[int(gone)], fp.canvas_landmarks(), cv2.BORDER_CONSTANT)
        return fp.blur(mask, max(0.6, (0.02 if gone else 0.008) * fw))

    def _glasses_canvas(self, image: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The glasses frames on the canvas (soft masks: to keep, and the wider one of where they were):
        what the prior's reconstruction of the person misses, on the band around the eyes and the bridge."""
        own = fp.canvas_reflectance(image, lm)
        miss = self.prior.to_image(own - self.prior.decode(self.prior.encode(own)))
        del own
        y = np.abs(miss).mean(-1)
        frame = cv2.dilate(np.clip((y - 0.08) / 0.12, 0, 1) * _glasses_band(), np.ones((3, 3), np.uint8))
        wide = cv2.dilate(np.clip((y - WIDE_MISS[0]) / WIDE_MISS[1], 0, 1) * _glasses_band(True), np.ones((7, 7), np.uint8))
        frame.flags.writeable = wide.flags.writeable = False
        return frame, wide  # kept below GLASSES_BELOW_LEVEL; where they were, from it


def _blended(img: np.ndarray, new: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.clip(img * (1.0 - a) + new * a + 0.5, 0, 255).astype(np.uint8)


def _noise_cap(band: np.ndarray) -> float:
    """A few times the noise level of a fine band's values (their median absolute value, robust to
    the few that are structure)."""
    return 2.5 * 1.4826 * float(np.median(np.abs(band))) + 0.5


def _forehead_fade(lm: np.ndarray, shape) -> np.ndarray:
    """1 up to FADE_FROM of the way from the brows to the top of the face oval, easing to 0 at its top.

    The oval stops across the forehead (fm.face_polygon: the hairline sits higher on almost every
    face), and a new face cut off there left a horizontal seam; faded in over the upper forehead the
    new skin and the person's meet without one.
    """
    up = fm.face_up(lm[:, :2])
    brow = fm.brow_top(lm[:, :2], up)
    top = float(np.max(fm.face_polygon(lm[:, :2]) @ up))
    start = brow + FADE_FROM * (top - brow)
    if top - start < 1.0:
        return np.ones(shape, np.float32)
    height = (np.arange(shape[0], dtype=np.float32)[:, None] * np.float32(up[1])
              + np.arange(shape[1], dtype=np.float32)[None, :] * np.float32(up[0]))
    t = np.clip((height - np.float32(start)) / np.float32(top - start), 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)  # smoothstep: no kink where the fade starts


@functools.lru_cache(maxsize=1)
def _canvas_valid() -> np.ndarray:
    """fp.canvas_mask as float32 (read-only): where the canvas holds a face."""
    m = fp.canvas_mask().astype(np.float32)
    m.flags.writeable = False
    return m


@functools.lru_cache(maxsize=2)
def _glasses_band(wide: bool = False) -> np.ndarray:
    """Where glasses frames can be on the canvas: a band around the eyes and across the bridge
    (`wide`: big frames too, aviators from the brows to the cheekbones)."""
    can = fp.canvas_landmarks()
    sx, sy = (3.0, 5.5) if wide else (1.9, 3.6)
    band = fp.fill(fp.CANVAS[::-1], [fp.scaled(fp.ring(can, e), sx, sy) for e in (fp.R_EYE, fp.L_EYE)]
                   + [cv2.convexHull(can[[193, 417, 351, 122, 168, 6]].astype(np.float32))[:, 0]], 1.0)
    band.flags.writeable = False
    return band

