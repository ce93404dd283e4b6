import hashlib

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ideud.engines.torch_engine import TorchEngine  # noqa: E402
from ideud.models import face_align as fa  # noqa: E402
from ideud.models import registry  # noqa: E402
from ideud.models.gfpgan import GFPGANv1Clean  # noqa: E402
from ideud.stream.types import RestoreItem  # noqa: E402
from ideud.stream.restore_gan import GanRestorer, from_network, load_gan_restorer, to_network  # noqa: E402

TINY = dict(narrow=0.125, num_style_feat=32)


def _item(h=320, w=280, scale=0.3, offset=(60.0, 70.0), track_id=1):
    """A synthetic crop: a skin-coloured ellipse with dark eyes and mouth on a grey background."""
    m = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]])
    pts = fa.FFHQ_TEMPLATE_512 @ m[:, :2].T + m[:, 2]
    img = np.full((h, w, 3), 128, np.uint8)
    centre = tuple(int(v) for v in pts.mean(0))
    cv2.ellipse(img, centre, (int(120 * scale * 1.4), int(170 * scale * 1.4)), 0, 0, 360, (215, 170, 140), -1)
    for x, y in pts[:2]:
        cv2.circle(img, (int(x), int(y)), 5, (40, 30, 30), -1)
    cv2.line(img, tuple(int(v) for v in pts[3]), tuple(int(v) for v in pts[4]), (120, 40, 40), 3)
    mask = np.zeros((h, w), np.float32)
    return RestoreItem(image=img, original=img.copy(), mask=mask, landmarks=fa.facemesh_from_five_points(pts), track_id=track_id, seed=7)


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return GFPGANv1Clean(**TINY).eval()


def test_network_io_conversions():
    faces = [np.full((4, 4, 3), v, np.uint8) for v in (0, 128, 255)]
    x = to_network(faces)
    assert x.shape == (3, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0, 0], [-1.0, 128 / 127.5 - 1, 1.0], atol=1e-6)
    back = from_network(np.concatenate([x[:2], x[2:] + 5.0]))  # out-of-range output is clamped
    assert back.dtype == np.uint8 and back.shape == (3, 4, 4, 3)
    assert [int(b[0, 0, 0]) for b in back] == [0, 128, 255]


def test_gan_restorer_end_to_end(tiny_net):
    restorer = GanRestorer(TorchEngine(tiny_net, device="cpu", max_batch=4))
    items = [_item(), _item(h=260, w=300, scale=0.25, offset=(90.0, 40.0), track_id=2)]
    bad = _item(track_id=3)
    bad.landmarks = np.zeros((468, 2))  # degenerate: cannot be aligned, handed back as is
    out = restorer.restore(items + [bad])

    assert len(out) == 3
    for it, o in zip(items, out):
        assert o.shape == it.image.shape and o.dtype == np.uint8
        pts = fa.five_points_from_facemesh(it.landmarks)
        face = fa.align_face(it.image, pts)
        cover = fa.coverage_mask(face.inverse, 512, it.image.shape[:2])
        inside, outside = cover > 0.99, cover == 0
        # the face region was replaced by the network's output...
        assert np.abs(o[inside].astype(int) - it.image[inside]).mean() > 5
        # ...and the crop outside the aligned square is untouched
        assert outside.any() and np.array_equal(o[outside], it.image[outside])
    assert out[2] is bad.image
    assert restorer.restore([]) == []


def test_load_gan_restorer_from_models_dir(tiny_net, tmp_path):
    path = tmp_path / "tiny-restorer.pth"
    torch.save({"params_ema": tiny_net.state_dict()}, path)
    entry = registry.ModelEntry(
        name="tiny-restorer",
        filename=path.name,
        url="http://127.0.0.1:9/unused",
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size=path.stat().st_size,
        licence="test",
        arch="gfpgan_v1_clean",
        arch_kwargs=TINY,
    )
    registry.register(entry, replace=True)
    try:
        restorer, reason = load_gan_restorer(models_dir=tmp_path, backend="torch", model=entry.name, device="cpu")
        assert restorer is not None, reason
        assert "tiny-restorer" in reason and "torch" in reason
        out = restorer.restore([_item()])
        assert out[0].shape == (320, 280, 3)

        from ideud.stream.restore_gan import gan_engine_options

        graphs, reason = load_gan_restorer(models_dir=tmp_path, model=entry.name,
                                           **gan_engine_options("cudagraphs"))
        if torch.cuda.is_available():
            assert graphs is not None and "cuda" in reason
        else:  # asked for a GPU engine on a CPU machine: one line saying why, no restorer
            assert graphs is None and "\n" not in reason and "CUDA" in reason
        with pytest.raises(ValueError, match="unknown GAN engine"):
            gan_engine_options("tflite")

        missing, reason = load_gan_restorer(models_dir=tmp_path / "empty", backend="torch", model=entry.name)
        assert missing is None
        assert "\n" not in reason and "not found" in reason and "models fetch tiny-restorer" in reason
    finally:
        registry.unregister(entry.name)


def test_load_gan_restorer_default_model_absent(tmp_path):
    restorer, reason = load_gan_restorer(models_dir=tmp_path)
    assert restorer is None and registry.DEFAULT_GAN in reason and "\n" not in reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gan_restorer_on_cuda_matches_cpu(tiny_net):
    import copy

    items = [_item(), _item(h=260, w=300, scale=0.25, offset=(90.0, 40.0), track_id=2)]
    cpu = GanRestorer(TorchEngine(copy.deepcopy(tiny_net), device="cpu", max_batch=4)).restore(items)
    gpu = GanRestorer(TorchEngine(copy.deepcopy(tiny_net), device="cuda", dtype="fp32", max_batch=4)).restore(items)
    for a, b in zip(cpu, gpu):
        assert a.shape == b.shape and b.dtype == np.uint8
        assert np.abs(a.astype(int) - b).max() <= 2  # same picture; conv algorithms differ in the last bits
