"""Train the learned Step II (models/restorer_net.StyleUNet) on the build portraits' σ = 0 pairs.

Developer tool (needs torch):

    python tools/build/restorer_pairs.py --out PAIRS.npz --cache LM.npz
    python tools/build/train_restorer.py --pairs PAIRS.npz --run RUN_DIR --minutes 18 \
        --export models/data/restorer_learned.onnx

Resumable: RUN_DIR/last.pt holds the networks, optimisers, step and random state; running the same
command again continues from it (on another machine too: `--device cuda` on a GPU host, e.g.
`--device cuda --batch 32 --threads 8 --minutes 30`). Losses go to RUN_DIR/losses.jsonl, sample
grids (rows: degraded input, output, target) to RUN_DIR/sample_<step>.png.

Losses (the paper's weights: l1 0.1, per 2, adv 0.1, fs 200, id 5):
- L1 between output and the real portrait;
- perceptual: feature matching on the whole-face discriminator's intermediate features (L1 between
  the output's and the target's, per layer, averaged); VGG19 cannot be had here;
- adversarial: softplus (non-saturating) for the whole-face discriminator, and the same (weight
  adv) for the eye and mouth component discriminators;
- facial-component style: L1 between Gram matrices of the component discriminators' features on
  output and target crops (both eyes share one discriminator, the mouth has its own);
- identity: 1 - EdgeFace cosine between the output and the *input render* (clean, before the
  degradations), through the EdgeFace xs network run in torch (models/edgeface.forward) on the
  112 ArcFace chip resampled from the 128 crop, so the network keeps the render's identity.
The generator's weights are also kept as an exponential moving average (EMA_DECAY 0.999, as GFPGAN's
net_g_ema): a GAN's generator moves from step to step (on 70 held-out portraits the real-vs-output
AUC of single checkpoints went from 0.66 at step 2,300 to 0.73 at 3,600), and the average is what
the sample grids show and the export writes.
Discriminators: softplus loss, R1 penalty every 16 steps, its weight StyleGAN2-ADA's heuristic
γ = 0.0002 · pixels / batch per discriminator (0.41 for the 128 face at batch 8, 0.03 for the eye
and mouth crops). The weight 10 used before (GFPGAN's, for 512 px and a wide network) held these
small discriminators at chance: in 6,217 CPU steps their loss never left 6 ln 2, so the
adversarial, feature-matching and Gram terms taught the generator nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # restorer_pairs beside this file

import restorer_pairs as rp  # noqa: E402

WEIGHTS = {"l1": 0.1, "per": 2.0, "adv": 0.1, "fs": 200.0, "id": 5.0}
EDGEFACE_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "models" / "edgeface" / "edgeface_xs_q.pt"
R1_EVERY = 16
EMA_DECAY = 0.999


def r1_gamma(x, batch: int) -> float:
    """R1 weight for a discriminator fed x (N, C, H, W) in batches of `batch` (StyleGAN2-ADA)."""
    return 0.0002 * x.shape[-1] * x.shape[-2] / batch


def edgeface_theta():
    """2x3 affine_grid theta: the 112 ArcFace chip sampled from the 128 FFHQ-aligned crop."""
    import torch

    from ideud.models.edgeface import ARCFACE_112, SIZE as CHIP
    from ideud.models.face_align import FFHQ_TEMPLATE_512
    from ideud.models.geometry import similarity_matrix

    m = np.vstack([similarity_matrix(FFHQ_TEMPLATE_512 * (rp.SIZE / 512.0), ARCFACE_112), [0, 0, 1]])
    out_norm_to_px = np.array([[CHIP / 2, 0, (CHIP - 1) / 2], [0, CHIP / 2, (CHIP - 1) / 2], [0, 0, 1]])
    px_to_src_norm = np.array([[2 / rp.SIZE, 0, 1 / rp.SIZE - 1], [0, 2 / rp.SIZE, 1 / rp.SIZE - 1], [0, 0, 1]])
    theta = px_to_src_norm @ np.linalg.inv(m) @ out_norm_to_px
    return torch.tensor(theta[:2], dtype=torch.float32)


class Identity:
    """EdgeFace xs in torch, frozen: L2-normalised embeddings of 128 aligned crops in [-1, 1]."""

    def __init__(self, path: Path = EDGEFACE_WEIGHTS, device="cpu"):
        import torch

        from ideud.models import edgeface as ef

        self.state = {k: v.to(device) for k, v in ef.load_state(path).items()}
        self.arch = ef.arch_of(self.state)
        self.forward_fn = ef.forward
        self.theta = edgeface_theta().to(device)
        self.torch = torch

    def __call__(self, x):
        F = self.torch.nn.functional
        grid = F.affine_grid(self.theta.expand(len(x), 2, 3), (len(x), 3, 112, 112), align_corners=False)
        chip = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return F.normalize(self.forward_fn(self.state, chip, self.arch), dim=1)


def to_tensor(batch: np.ndarray, device):
    import torch

    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).float().div(127.5).sub(1.0).to(device)


def to_uint8(x) -> np.ndarray:
    return ((x.detach().cpu().clamp(-1, 1).numpy().transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5).astype(np.uint8)


class Trainer:
    def __init__(self, device="cpu", lr: float = 1e-3, widths=None, identity: Optional[Identity] = None):
        import torch

        from ideud.models import restorer_net as rn

        self.torch, self.rn, self.device = torch, rn, device
        self.g = rn.StyleUNet(**({"widths": widths} if widths else {})).to(device)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.d = rn.Discriminator().to(device)
        self.d_eye = rn.Discriminator((16, 32, 64)).to(device)
        self.d_mouth = rn.Discriminator((16, 32, 64)).to(device)
        ds = [*self.d.parameters(), *self.d_eye.parameters(), *self.d_mouth.parameters()]
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr, betas=(0.5, 0.99))
        self.opt_d = torch.optim.Adam(ds, lr=lr, betas=(0.5, 0.99))
        self.identity = identity if identity is not None else Identity(device=device)
        self.step = 0

    def _components(self, x):
        rn = self.rn
        eyes = self.torch.cat([rn.crop(x, b) for b in rn.EYE_BOXES], 0)
        return eyes, rn.crop(x, rn.MOUTH_BOX)

    def generator_losses(self, inp, render, tgt, adversarial: bool = True) -> tuple:
        """(total, {name: value}) of the generator on one batch."""
        F = self.torch.nn.functional
        out = self.g(inp)
        loss = {"l1": F.l1_loss(out, tgt)}
        logit, f_out = self.d(out)
        with self.torch.no_grad():
            _, f_tgt = self.d(tgt)
        loss["per"] = sum(F.l1_loss(a, b) for a, b in zip(f_out, f_tgt)) / len(f_out)
        adv = F.softplus(-logit).mean()
        fs = out.new_zeros(())
        for d, o, t in zip((self.d_eye, self.d_mouth), self._components(out), self._components(tgt)):
            lo, fo = d(o)
            with self.torch.no_grad():
                _, ft = d(t)
            adv = adv + F.softplus(-lo).mean()
            fs = fs + sum(F.l1_loss(self.rn.gram(a), self.rn.gram(b)) for a, b in zip(fo, ft))
        loss["adv"], loss["fs"] = adv, fs
        with self.torch.no_grad():
            e_render = self.identity(render)
        loss["id"] = (1.0 - (self.identity(out) * e_render).sum(1)).mean()
        total = sum(WEIGHTS[k] * v for k, v in loss.items() if adversarial or k not in ("adv", "fs", "per"))
        return total, out, loss

    def discriminator_loss(self, fake, real):
        F = self.torch.nn.functional
        fake = fake.detach()
        total = fake.new_zeros(())
        pairs = [(self.d, fake, real)]
        for d, f, r in zip((self.d_eye, self.d_mouth), self._components(fake), self._components(real)):
            pairs.append((d, f, r))
        r1 = self.step % R1_EVERY == 0
        for d, f, r in pairs:
            if r1:
                r = r.detach().requires_grad_(True)
            lr_, _ = d(r)
            lf, _ = d(f)
            total = total + F.softplus(lf).mean() + F.softplus(-lr_).mean()
            if r1:
                g, = self.torch.autograd.grad(lr_.sum(), r, create_graph=True)
                total = total + r1_gamma(r, len(real)) / 2 * R1_EVERY * g.pow(2).flatten(1).sum(1).mean()
        return total

    def train_step(self, inp, render, tgt, adversarial: bool = True) -> dict:
        self.g.train()
        total, out, loss = self.generator_losses(inp, render, tgt, adversarial)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        with self.torch.no_grad():
            for e, p in zip(self.g_ema.parameters(), self.g.parameters()):
                e.lerp_(p, 1.0 - EMA_DECAY)
        d_loss = self.discriminator_loss(out, tgt)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        self.step += 1
        return {"step": self.step, "g": float(total.detach()), "d": float(d_loss.detach()),
                **{k: float(v.detach()) for k, v in loss.items()}}

    def state(self, rng: np.random.Generator) -> dict:
        return {"step": self.step, "g": self.g.state_dict(), "g_ema": self.g_ema.state_dict(), "d": self.d.state_dict(),
                "d_eye": self.d_eye.state_dict(), "d_mouth": self.d_mouth.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "widths": list(self.g.widths), "rng": rng.bit_generator.state}

    def load(self, ck: dict, rng: np.random.Generator) -> None:
        for k in ("g", "d", "d_eye", "d_mouth", "opt_g", "opt_d"):
            getattr(self, k).load_state_dict(ck[k])
        self.g_ema.load_state_dict(ck.get("g_ema", ck["g"]))  # a checkpoint from before the average: start it there
        self.step = int(ck["step"])
        rng.bit_generator.state = ck["rng"]


def batch(pairs: dict, idx, rng: np.random.Generator) -> tuple:
    """(degraded input, clean render, target) uint8 batches, augmented."""
    inp, ren, tgt = [], [], []
    for i in idx:
        a, b = rp.augment(pairs["inputs"][i], pairs["targets"][i], rng)
        inp.append(rp.degrade(a, rng))
        ren.append(a)
        tgt.append(b)
    return np.stack(inp), np.stack(ren), np.stack(tgt)


def write_grid(path: Path, rows: Sequence[np.ndarray]) -> None:
    import cv2

    grid = np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)
    cv2.imwrite(str(path), np.ascontiguousarray(grid[:, :, ::-1]))


def export_checked(g, path: Path, sample: np.ndarray) -> float:
    """Write the ONNX and return max |onnxruntime - torch| on `sample` (uint8 NHWC)."""
    import onnxruntime as ort
    import torch

    from ideud.models import restorer_net as rn

    g = g.cpu().eval()
    rn.export_onnx(g, path)
    x = to_tensor(sample, "cpu")
    with torch.no_grad():
        ref = g(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    return float(np.abs(got - ref).max())


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, required=True, help="pairs file from restorer_pairs.py")
    ap.add_argument("--run", type=Path, required=True, help="run folder: checkpoint, losses, sample grids")
    ap.add_argument("--minutes", type=float, default=18.0, help="wall-clock budget of this run")
    ap.add_argument("--steps", type=int, default=1_000_000, help="stop at this total step")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=150, help="steps of L1 + identity only")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (a GPU host)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--edgeface", type=Path, default=EDGEFACE_WEIGHTS,
                    help="EdgeFace xs torch weights for the identity loss (default: ../shared/models/edgeface)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--sample-every", type=int, default=200)
    ap.add_argument("--export", type=Path, default=None, help="write the generator as ONNX here at the end")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if not args.pairs.is_file():
        print(f"error: pairs file not found: {args.pairs}", file=sys.stderr)
        return 2
    with np.load(args.pairs) as z:
        pairs = {"inputs": z["inputs"], "targets": z["targets"]}
    n = len(pairs["inputs"])
    args.run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    if not args.edgeface.is_file():
        print(f"error: EdgeFace weights not found: {args.edgeface}", file=sys.stderr)
        return 2
    trainer = Trainer(args.device, args.lr, identity=Identity(args.edgeface, device=args.device))
    ckpt = args.run / "last.pt"
    if ckpt.is_file():
        trainer.load(torch.load(ckpt, map_location=args.device, weights_only=False), rng)
        print(f"resumed at step {trainer.step}")
    view = batch(pairs, np.arange(min(6, n)), np.random.default_rng(123))  # fixed sample-grid faces
    t0 = time.time()
    log = open(args.run / "losses.jsonl", "a")

    def save():
        tmp = args.run / "last.pt.tmp"
        torch.save(trainer.state(rng), tmp)
        tmp.replace(ckpt)

    while trainer.step < args.steps and time.time() - t0 < args.minutes * 60:
        inp, ren, tgt = batch(pairs, rng.integers(0, n, args.batch), rng)
        row = trainer.train_step(to_tensor(inp, args.device), to_tensor(ren, args.device),
                                 to_tensor(tgt, args.device), adversarial=trainer.step >= args.warmup)
        if trainer.step % args.log_every == 0:
            row["seconds"] = round(time.time() - t0, 1)
            log.write(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}) + "\n")
            log.flush()
            print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
        if trainer.step % args.save_every == 0:
            save()
        if trainer.step % args.sample_every == 0:
            with torch.no_grad():
                out = to_uint8(trainer.g_ema(to_tensor(view[0], args.device)))
            write_grid(args.run / f"sample_{trainer.step:06d}.png", [view[0], out, view[2]])
    save()
    print(f"stopped at step {trainer.step} after {time.time() - t0:.0f} s")
    if args.export:
        diff = export_checked(trainer.g_ema, args.export, view[0])
        print(f"exported {args.export}: max |onnx - torch| = {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
