"""The learned Step II: network (models/restorer_net.py), training step, weights check, restorer."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ideud.eval.portraits import build_names, held_out_names, portraits_dir
from ideud.stream.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = portraits_dir()
EDGEFACE_PT = ROOT.parent / "shared" / "models" / "edgeface" / "edgeface_xs_q.pt"
needs_portraits = pytest.mark.skipif(PORTRAITS is None, reason="shared portraits not found")


def tool(name: str):
    """A script from tools/build (not in the wheel)."""
    path = ROOT / "tools" / "build" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def landmarks(paths):
    return tool("build_face_prior").portrait_landmarks(paths)


def test_onnx_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from ideud.models import restorer_net as rn

    torch.manual_seed(0)
    net = rn.StyleUNet(widths=(4, 8, 8, 12, 12), style_dim=8)
    for p in [*net.head.parameters(), *net.film.parameters()]:  # zero at init: give the residual path weight
        torch.nn.init.normal_(p, std=0.1)
    path = tmp_path / "tiny.onnx"
    rn.export_onnx(net, path)
    x = torch.rand(3, 3, rn.SIZE, rn.SIZE) * 2 - 1
    with torch.no_grad():
        ref = net(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert np.abs(ref - x.numpy()).max() > 0.05  # the network does change its input
    assert np.abs(got - ref).max() < 1e-4


@needs_portraits
@pytest.mark.skipif(not EDGEFACE_PT.is_file(), reason="EdgeFace torch weights not found")
def test_one_training_step_lowers_the_loss():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pairs_tool = tool("restorer_pairs")
    train = tool("train_restorer")
    pairs = pairs_tool.make_pairs(build_names(PORTRAITS)[:2], PORTRAITS, log=lambda *_: None)
    assert pairs["inputs"].shape == pairs["targets"].shape == (2, 128, 128, 3)
    rng = np.random.default_rng(0)
    inp, ren, tgt = (train.to_tensor(b, "cpu") for b in train.batch(pairs, [0, 1], rng))
    trainer = train.Trainer("cpu", lr=1e-2, widths=(4, 8, 8, 12, 12))

    def loss():
        with torch.no_grad():
            return float(trainer.generator_losses(inp, ren, tgt, adversarial=False)[0])

    before = loss()
    ema_before = [p.detach().clone() for p in trainer.g_ema.parameters()]
    row = trainer.train_step(inp, ren, tgt, adversarial=False)
    assert loss() < before
    for e0, e, g in zip(ema_before, trainer.g_ema.parameters(), trainer.g.parameters()):  # the average moved 0.1 %
        assert torch.allclose(e, e0 + (1 - train.EMA_DECAY) * (g - e0), atol=1e-7)
    assert any(not torch.equal(e, g) for e, g in zip(trainer.g_ema.parameters(), trainer.g.parameters()))
    row = trainer.train_step(inp, ren, tgt, adversarial=True)  # the full loss set runs and is finite
    assert all(np.isfinite(row[k]) for k in ("l1", "per", "adv", "fs", "id", "d"))


@needs_portraits
@pytest.mark.skipif(not EDGEFACE_PT.is_file(), reason="EdgeFace torch weights not found")
def test_discriminators_learn_to_tell_render_from_portrait():
    """The GAN terms only teach the generator once the discriminators leave chance. With R1 at
    GFPGAN's 10 these small ones stayed there (at 6 ln 2 for all 6,217 steps of the earlier runs)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = tool("train_restorer")
    pairs = tool("restorer_pairs").make_pairs(build_names(PORTRAITS)[:4], PORTRAITS, log=lambda *_: None)
    inp, _, tgt = (train.to_tensor(b, "cpu") for b in train.batch(pairs, [0, 1, 2, 3], np.random.default_rng(0)))
    trainer = train.Trainer("cpu", widths=(4, 8, 8, 12, 12))
    with torch.no_grad():
        fake = trainer.g(inp)  # the untrained generator hands the degraded render back
    for _ in range(80):
        d_loss = trainer.discriminator_loss(fake, tgt)
        trainer.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        trainer.opt_d.step()
        trainer.step += 1
    nets = (trainer.d, trainer.d_eye, trainer.d_mouth)
    with torch.no_grad():
        gaps = [float((d(r)[0] - d(f)[0]).mean())
                for d, f, r in zip(nets, (fake, *trainer._components(fake)), (tgt, *trainer._components(tgt)))]
    # whole face / eyes / mouth, seeds 0-3: 0.05-1.21 / 1.17-2.14 / 2.10-3.74 (the weight 10: 0.07-0.55 /
    # 0.10-0.16 / 0.17-0.34); the whole face needs more steps than a test should take
    assert min(gaps[1:]) > 0.8 and np.mean(gaps) > 0.8, gaps


def test_corrupt_weights_are_refused_with_one_line(tmp_path):
    from ideud.stream.restore_learned import WEIGHTS_PATH, LearnedRestorer

    data = bytearray(WEIGHTS_PATH.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "restorer_learned.onnx"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        LearnedRestorer(path=bad)
    assert "\n" not in str(err.value) and "corrupt" in str(err.value)
    with pytest.raises(InputError, match="missing"):
        LearnedRestorer(path=tmp_path / "absent.onnx")


def test_registered_not_default():
    from ideud.stream.restore import EMBEDDED_DEFAULT, make_restorer

    r = make_restorer("learned")
    assert r.name == "learned" and EMBEDDED_DEFAULT != "learned"


@needs_portraits
def test_keeps_the_render_identity_on_a_held_out_face():
    import cv2

    from ideud.models.edgeface import default_edgeface
    from ideud.models.face_align import five_points_from_facemesh
    from ideud.stream.restore_learned import LearnedRestorer
    from ideud.stream.types import RestoreItem

    name = held_out_names(PORTRAITS)[0]
    lm = landmarks([PORTRAITS / name])[name]
    rgb = np.ascontiguousarray(cv2.imread(str(PORTRAITS / name))[:, :, ::-1])
    item = RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32), landmarks=lm,
                       track_id=1, seed=7)
    learned = LearnedRestorer()
    render = learned.first.restore([item])[0]  # the prior's new face: Step I's output
    out = learned.refine([render], [lm])[0]
    assert out.shape == render.shape and out.dtype == np.uint8
    assert np.abs(out.astype(float) - render.astype(float)).mean() > 0.2  # the network did something
    edge = default_edgeface()
    p5 = five_points_from_facemesh(lm)
    cos = edge.similarity(edge.embed(out, p5), edge.embed(render, p5))
    assert cos >= edge.threshold("balanced")
