"""Registry of downloadable model weights: where they come from, how to check them, how to load them.

Files live in one models directory: `--models-dir`, else `$IDEUD_MODELS_DIR`,
else `$XDG_CACHE_HOME/ideud`, else `~/.cache/ideud`.

A file is only ever loaded after its size and SHA-256 match the registry;
it is re-hashed every time (about 0.3 s for a 350 MB checkpoint with SHA-NI,
small next to loading it), so a file damaged after download is caught too,
whatever its timestamps say. Downloads
go to a temporary file in the same directory and are renamed into place only
after the hash matched, so an interrupted or corrupt download never shadows a
good file. Loading uses `torch.load(weights_only=True)`: a checkpoint cannot
run code.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

_CHUNK = 1 << 20


class ModelUnavailable(RuntimeError):
    """A model cannot be used (missing, corrupt, offline); the message is one line for the user."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    filename: str
    url: str
    sha256: Optional[str]  # None: no trustworthy published hash; `verify` says so
    size: Optional[int]  # bytes
    licence: str
    arch: str  # key of ARCHS: which network class the weights are for
    arch_kwargs: dict = field(default_factory=dict)
    notes: str = ""


_GFPGAN_LICENCE = "Apache-2.0 (TencentARC/GFPGAN); trained on FFHQ (CC BY-NC-SA 4.0 images)"

# Hashes: SHA-256 of the files at the official release URLs, as recorded by
# several independent public download manifests (the same value in each).
_BUILTIN = (
    ModelEntry(
        name="GFPGANv1.3",
        filename="GFPGANv1.3.pth",
        url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
        sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
        size=348_632_874,
        licence=_GFPGAN_LICENCE,
        arch="gfpgan_v1_clean",
        notes="GFPGAN v1 clean; more natural, less sharp than v1.4",
    ),
    ModelEntry(
        name="GFPGANv1.4",
        filename="GFPGANv1.4.pth",
        url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth",
        sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        size=348_632_874,
        licence=_GFPGAN_LICENCE,
        arch="gfpgan_v1_clean",
        notes="GFPGAN v1 clean; the default restorer",
    ),
    ModelEntry(
        name="parsing_bisenet",
        filename="parsing_bisenet.pth",
        url="https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
        sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
        size=53_289_463,
        licence="MIT (facexlib, face-parsing.PyTorch); trained on CelebAMask-HQ (non-commercial research)",
        arch="bisenet",
        notes="19-class face parser",
    ),
)

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in _BUILTIN}
DEFAULT_GAN = "GFPGANv1.4"


def _gfpgan_factory(**kwargs):
    from ideud.models.gfpgan import GFPGANv1Clean

    return GFPGANv1Clean(**kwargs)


def _bisenet_factory(**kwargs):
    from ideud.models.bisenet import BiSeNet

    return BiSeNet(**kwargs)


ARCHS: dict[str, Callable] = {"gfpgan_v1_clean": _gfpgan_factory, "bisenet": _bisenet_factory}


def register(entry: ModelEntry, replace: bool = False) -> ModelEntry:
    """Add a model (tests use this to point at a local server and a checkpoint they built)."""
    if entry.name in REGISTRY and not replace:
        raise ValueError(f"model {entry.name!r} is already registered")
    if entry.arch not in ARCHS:
        raise ValueError(f"unknown arch {entry.arch!r}; choose one of {', '.join(ARCHS)}")
    REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelUnavailable(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def default_models_dir() -> Path:
    env = os.environ.get("IDEUD_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ideud"


def resolve_models_dir(models_dir=None) -> Path:
    return Path(models_dir).expanduser() if models_dir else default_models_dir()


def model_path(name: str, models_dir=None) -> Path:
    return resolve_models_dir(models_dir) / get_entry(name).filename


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class VerifyResult:
    name: str
    path: Path
    status: str  # ok | missing | size-mismatch | hash-mismatch | unverified
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def usable(self) -> bool:
        """Safe to load: verified, or (no published hash) present with the right size."""
        return self.status in ("ok", "unverified")


def verify(name: str, models_dir=None) -> VerifyResult:
    """Check a model file's presence, size and SHA-256."""
    entry = get_entry(name)
    path = model_path(name, models_dir)
    if not path.is_file():
        return VerifyResult(name, path, "missing", f"{name}: not found at {path}")
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return VerifyResult(
            name, path, "size-mismatch", f"{name}: {path} has {size} bytes, expected {entry.size} (truncated or corrupt)"
        )
    if entry.sha256 is None:
        return VerifyResult(
            name, path, "unverified", f"{name}: no published SHA-256 is known for this file; only its size was checked"
        )
    if sha256_file(path) != entry.sha256:
        return VerifyResult(name, path, "hash-mismatch", f"{name}: SHA-256 of {path} does not match (corrupt file)")
    return VerifyResult(name, path, "ok", f"{name}: OK ({path})")


def _progress(total: Optional[int], desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr, leave=False)


def fetch(name: str, models_dir=None, force: bool = False, progress: bool = True, timeout: float = 30.0) -> Path:
    """Make sure a verified copy of `name` is in the models dir; download it if needed.

    Raises ModelUnavailable with a one-line message when offline or when the
    download does not match the registry.
    """
    entry = get_entry(name)
    path = model_path(name, models_dir)
    if not force:
        res = verify(name, models_dir)
        if res.usable:
            return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise ModelUnavailable(f"cannot write to models dir {path.parent}: {e.strerror or e}") from None
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    received = 0
    bar = None
    try:
        try:
            req = urllib.request.Request(entry.url, headers={"User-Agent": "ideud-video"})
            with urllib.request.urlopen(req, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
                fd = None
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else entry.size
                bar = _progress(total, entry.filename, progress)
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise ModelUnavailable(f"cannot download {name} from {entry.url}: {reason} (offline?)") from None
        finally:
            if bar is not None:
                bar.close()
        if entry.size is not None and received != entry.size:
            raise ModelUnavailable(f"download of {name} is incomplete: {received} of {entry.size} bytes")
        digest = h.hexdigest()
        if entry.sha256 is not None and digest != entry.sha256:
            raise ModelUnavailable(f"download of {name} does not match its SHA-256 (got {digest[:12]}...)")
        os.replace(tmp, path)
        return path
    finally:
        if fd is not None:
            os.close(fd)
        tmp.unlink(missing_ok=True)


def ensure(name: str, models_dir=None, download: bool = False, progress: bool = True) -> Path:
    """Path of a usable copy of `name`; fetches it when `download`, else raises ModelUnavailable."""
    res = verify(name, models_dir)
    if res.usable:
        return res.path
    if download:
        return fetch(name, models_dir, force=True, progress=progress)
    hint = f"run `ideud-video models fetch {name}`"
    raise ModelUnavailable(f"{res.message}; {hint}")


def load_state_dict(path, key: Optional[str] = None) -> dict:
    """Weights from a checkpoint file; takes `params_ema` (then `params`) when present."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors vary by torch version
        raise ModelUnavailable(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict):
        raise ModelUnavailable(f"checkpoint {path} is not a state dict")
    for k in ([key] if key else ["params_ema", "params"]):
        if k in ckpt and isinstance(ckpt[k], dict):
            return ckpt[k]
    if key:
        raise ModelUnavailable(f"checkpoint {path} has no {key!r} entry")
    return ckpt


def load_model(name: str, models_dir=None, download: bool = False, device="cpu", progress: bool = True):
    """Build the registered network, load its verified weights (strict), eval mode."""
    entry = get_entry(name)
    path = ensure(name, models_dir, download=download, progress=progress)
    net = ARCHS[entry.arch](**entry.arch_kwargs)
    state = load_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelUnavailable(f"{name}: weights do not fit the {entry.arch} network: {first}") from None
    return net.eval().to(device)
