"""The options of a run (library and CLI): what each one does is next to its default."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Union


@dataclass
class Options:
    scale: float = 0.25  # sigma of the ID-code perturbation
    seed: Optional[int] = None  # fixes every track's seed (reproducible runs)
    min_face: int = 12  # faces smaller than this (px) are obfuscated, not re-rendered
    det_threshold: Optional[float] = None  # None: the detector's own (CenterFace 0.3, chosen for recall)
    detector: str = "auto"  # stream/detect.py DETECTOR_NAMES: auto | centerface | blazeface | blazeface-tiled
    restorer: str = "auto"  # auto: the GAN tier with weights and a GPU, else the embedded tier
    gan_engine: str = "auto"  # how the GAN runs (stream/restore_gan.py GAN_ENGINES)
    privacy: str = "balanced"  # privacy guard (stream/guard.py): off | balanced | strict
    # guard candidates tried per frame during a search; None: the whole search in one frame (files).
    # Live streams spread it (the face stays obfuscated meanwhile) to keep latency bounded.
    guard_per_frame: Optional[int] = None
    fallback: str = "pixelate"  # obfuscation for faces that cannot be de-identified
    codec: str = "auto"  # auto: libx264, or what the output's container holds (.webm: libvpx-vp9; stream/encode.py)
    crf: Optional[int] = None  # None: the codec's own default here (encode.DEFAULT_CRF: 18 for H.264)
    preset: Optional[str] = "veryfast"
    audio: bool = True
    keep_metadata: bool = False
    force: bool = False
    # the detector runs on every N-th frame of a file run (and at scene cuts, and while no face is
    # tracked); FaceMesh follows the tracked faces between (stream/cadence.py). Live streams: every frame
    detect_every: int = 2
    max_misses: int = 12  # frames a track survives without detection (predicted box processed)
    # a track that starts on a person seen before in the run gets that person's new face back
    # (stream/relink.py); False: every track a face of its own. Segmented batch runs do not link
    relink: bool = True
    smooth: bool = True
    frame_log: bool = False  # per-frame face list in the report (boxes and status only)
    progress: bool = False
    # pass 1 of a segmented batch run: detect, track and fit landmarks only. No pixel is
    # changed, so frames processed this way must never be written (stream/batch/work.py)
    track_only: bool = False
    # frames whose faces may wait for the restorer while Step I runs on the next ones (the
    # restorer on its own thread, faces of waiting frames in one batch). None: 2 (with a GPU
    # restorer or more than one core), else 0
    restore_ahead: Optional[int] = None
    # processes of a file run: this one and processes - 1 workers that detect faces ahead
    # (stream/workers.py); 1: everything here. "auto": cores - 1, at most 4 (1 on a 2-core machine)
    processes: Union[int, str] = 1
    # processes that warp each face, cut its occluders and run the restorer (Step II), a track always in
    # the same one (stream/restore_processes.py):
    # the output is the same bit for bit. None: one per two cores (1..4) for a CPU restorer built from
    # these options, 0 on one core or with a GPU restorer; 0: the restorer runs in this process
    restore_processes: Optional[int] = None
    # test hook: stage name -> frame indices on which that stage raises
    inject_faults: dict = field(default_factory=dict)


def options_report(o: Options) -> dict:
    """The options as run, for reports and manifests, less the seed: with it (and the guard's
    choice) anyone holding the output could redraw each track's noise and undo Step I. Only
    whether one was given is written."""
    d = {k: v for k, v in asdict(o).items() if k not in ("inject_faults", "seed")}
    d["seed_given"] = o.seed is not None
    return d
