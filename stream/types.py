"""Small typed records passed between the pipeline stages.

Decode gives a `Frame`; detect `Face`s; track `Track`s. Per face and frame one `FaceJob`
goes through the stages: Step I fills its `Rendering` (the perturbed geometry, with the
`Codes`), render its `Rendered` crop on a `Crop` of the frame, and the restorer is handed its
`RestoreItem`.

Images are numpy arrays. RGB images are HxWx3 uint8. Boxes are float
(x0, y0, x1, y1) in pixels of the full-resolution frame.
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

import numpy as np


@dataclass
class Frame:
    """One decoded video frame.

    `planes` keeps the decoder's own 8-bit planar YUV data (Y, U, V) so that
    pixels outside the face regions are written back untouched; `rgb` is
    made on demand for analysis only.
    """

    index: int
    pts: Optional[int]
    time_base: Optional[Fraction]
    planes: list  # [Y, U, V] uint8 arrays, native subsampling
    pix_fmt: str  # working pixel format of `planes` (yuv420p, yuvj444p, ...)
    full_range: bool = False
    matrix: str = "bt601"  # YUV<->RGB matrix: bt601 | bt709 | bt2020
    # the source's colour description, as FFmpeg numbers them: (primaries, transfer, matrix, range);
    # 2, 2, 2, 0: unspecified. The output says the same, so players show it as the input (an HDR
    # phone video's BT.2020/HLG included)
    colour: tuple = (2, 2, 2, 0)
    sar: Optional[Fraction] = None  # the source's pixel aspect ratio where not square (anamorphic video): kept
    field_order: int = 0  # the source's, as FFmpeg numbers it (2-5: interlaced, 2 and 4 top field first)
    rotation: int = 0  # degrees from the display matrix side data (kept, not applied)
    time: float = 0.0  # seconds
    small: Optional[np.ndarray] = None  # downscaled RGB copy for the detector
    small_scale: tuple = (1.0, 1.0)  # full-frame pixels per `small` pixel (x, y)
    # a source of more than 8 bits: its planes at 10 bits (uint16), `planes` being their 8-bit copy
    # (stream/deep.py); None otherwise. Written where the output keeps the depth, outside `touched`
    deep: Optional[list] = None
    touched: list = field(default_factory=list)  # Crops whose pixels the blend stage wrote (luma px)
    hdr10: Optional[str] = None  # a deep source's HDR10 mastering-display / light-level data, as x265 takes it

    @property
    def is_rgb(self) -> bool:
        """Planes are R, G, B (still images) instead of Y, U, V."""
        return self.pix_fmt == "rgb"

    @property
    def width(self) -> int:
        return self.planes[0].shape[1]

    @property
    def height(self) -> int:
        return self.planes[0].shape[0]


@dataclass
class Face:
    """One detection: box, confidence and the detector's keypoints."""

    box: np.ndarray  # (4,) x0 y0 x1 y1
    score: float
    # (K, 2) keypoints in frame pixels; BlazeFace/CenterFace order:
    # right eye, left eye, nose tip, mouth centre, (right ear, left ear)
    keypoints: Optional[np.ndarray] = None
    # a find no cue confirmed that could be a heavily blurred face: not processed as a face, only
    # blurred a little more (stream/soften.py)
    soft: bool = False

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class Codes:
    """Per-frame parametric codes of one face (Step I).

    Only the *perturbed* identity is carried here; the real ID code stays
    inside the identity stage's per-track state.
    """

    rotation: np.ndarray  # (3, 3) canonical -> camera
    scale: float
    translation: np.ndarray  # (3,)
    expression: np.ndarray  # (468, 3) canonical-frame residual after identity
    id_perturbed: np.ndarray  # (K,) z'_id


@dataclass
class Track:
    """A face followed over time. `seed` fixes the perturbation for the track's life."""

    id: int
    seed: int
    box: np.ndarray
    first_frame: int
    last_frame: int
    misses: int = 0  # consecutive frames without a detection


@dataclass
class Crop:
    """An axis-aligned region of the frame, in luma pixels; x0/y0 even for chroma."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def offset(self) -> np.ndarray:
        return np.array([self.x0, self.y0], float)


@dataclass
class Rendering:
    """Step I's answer for one face in one frame: what the render stage draws (stream/identity.py)."""

    landmarks: np.ndarray  # (468, 3) smoothed, frame pixels
    target: np.ndarray  # (468, 2) perturbed positions, frame pixels
    visible: np.ndarray  # (468,) bool
    codes: Codes
    yaw: float
    pitch: float


@dataclass
class Rendered:
    """The render stage's output for one face: the warped crop and its mask (stream/render.py)."""

    crop: Crop
    image: np.ndarray  # warped RGB crop
    mask: np.ndarray  # float32 face mask in the crop
    target: np.ndarray  # (468, 2) perturbed landmarks in crop pixels
    occluded: float = 0.0  # share of the face cut out of `mask` for occluders: left original


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
    # a guard candidate restored ahead of need: what it fixes for its track (a new face's code, its
    # picks) is taken back unless the guard keeps it (`settle`), as if it had never been asked
    provisional: bool = False


@dataclass
class RenderRequest:
    """One face to render, cut its occluders from and restore in one go, where the restorer runs
    in processes of its own (stream/face_work.py, stream/restore_processes.py); frame pixels."""

    original: np.ndarray  # HxWx3 uint8 RGB: the frame's crop
    crop: Crop
    landmarks: np.ndarray  # (468, 3) the smoothed landmarks (Step I's rendering)
    target: np.ndarray  # (468, 2) perturbed positions
    visible: np.ndarray  # (468,) bool: points facing the camera
    measured: Optional[np.ndarray]  # this frame's measured landmarks (the occlusion stage's)
    track_id: int
    seed: int
    level: int = 0
    restore: bool = True  # False: a face obfuscated anyway, rendered and cut only for its occluder
    rendered: Optional[Rendered] = None  # the warp, made by the caller (face_work.warp_here); None: where it is answered


@dataclass
class RenderAnswer:
    """A `RenderRequest` done: the render, its mask without occluders and the restored face, or the
    `reason` the face must be obfuscated instead (occluded, error:...)."""

    image: Optional[np.ndarray] = None  # warped crop (Rendered.image)
    mask: Optional[np.ndarray] = None
    target: Optional[np.ndarray] = None  # perturbed landmarks in crop pixels
    occluded: float = 0.0
    face: Optional[np.ndarray] = None  # the restorer's output
    reason: Optional[str] = None
    occluder: Optional[np.ndarray] = None  # what the occluder cut left original (OcclusionStage.take_occluder)


@dataclass
class FaceJob:
    """One face in one frame, from the tracker to paste-back (stream/processor.py).

    Filled in stage by stage; `reason` set at any stage means the face is obfuscated at `box`
    instead of pasted (fail closed). Nothing of the person's real identity is kept here.
    """

    track: Track
    box: np.ndarray  # region obfuscated if anything fails: the detection or predicted box, then the mesh's
    reason: Optional[str] = None  # why the face is obfuscated (small, no_mesh, lost, privacy, error:...)
    rendering: Optional[Rendering] = None  # Step I: geometry to draw
    rendered: Optional[Rendered] = None  # render: the warped crop and its mask
    item: Optional[RestoreItem] = None  # what the restorer is handed (its `image` is `rendered.image`)
    request: Optional[RenderRequest] = None  # rendered and restored in a restore process: until it answers
    guard_version: int = -1  # the guard's version of the track's parameters when the face was rendered
    propagated: bool = False  # its mesh was the last frame's moved by optical flow, not fitted
    occluder: Optional[tuple] = None  # (Crop, uint8 HxW): this frame's occluder, kept original if obfuscated
    # how the guard checked its new face's surroundings ("blur", "fill" or None), fixed at this frame's review:
    # a later frame's review may change the track's (frames wait for their paste-back), not this face's
    surroundings: Optional[str] = None
    checked: bool = False  # the guard checked it in full at its frame's review (stream/retract.py)

    @property
    def status(self) -> str:
        return "deidentified" if self.reason is None else f"fallback:{self.reason}"


@dataclass
class PendingFrame:
    """A frame between Step I (`prepare`) and Step II + paste-back (`finish`)."""

    frame: Frame
    number: int  # the processor's count of this frame (report), not the decoder's index
    pairs: list = field(default_factory=list)  # (track, face or None)
    jobs: list[FaceJob] = field(default_factory=list)
    future: Optional[Future] = None  # the restore worker's answer
    finished_tracks: list = field(default_factory=list)  # dropped once this frame is done
    error: Optional[BaseException] = None  # a whole-frame stage failed in prepare
    done: bool = False  # nothing left to do (detection failed: the frame is hidden)
    detected: bool = True  # the detector ran on this frame (stream/cadence.py)
    track_boxes: dict = field(default_factory=dict)  # track id -> its tracker box in this frame (reuse)
    reviewed: Optional[tuple] = None  # (jobs, restored faces) once restored and reviewed (`_settle`)
    soft: list = field(default_factory=list)  # boxes of soft finds, blurred at the end (stream/soften.py)
    look_back: list = field(default_factory=list)  # (box, frames back) of faces first found later (stream/look_back.py)

    def restoring(self) -> list[FaceJob]:
        """The jobs whose faces went to the restorer, in the order they were handed over."""
        return [j for j in self.jobs if j.item is not None or j.request is not None]
