import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ideud.models import bisenet  # noqa: E402
from ideud.models.bisenet import LABEL, BiSeNet, face_mask, head_mask, parse_faces, styling_mask  # noqa: E402


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return BiSeNet(num_class=19).eval()


def test_state_dict_uses_facexlib_names(net):
    sd = net.state_dict()
    expected = {
        "cp.resnet.conv1.weight": (64, 3, 7, 7),
        "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "cp.resnet.layer4.1.bn2.running_var": (512,),
        "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
        "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
        "cp.arm32.bn_atten.weight": (128,),
        "cp.conv_head32.conv.weight": (128, 128, 3, 3),
        "cp.conv_avg.conv.weight": (128, 512, 1, 1),
        "ffm.convblk.conv.weight": (256, 256, 1, 1),  # res8 (128) + context (128)
        "ffm.conv1.weight": (64, 256, 1, 1),
        "ffm.conv2.weight": (256, 64, 1, 1),
        "conv_out.conv.conv.weight": (256, 256, 3, 3),
        "conv_out.conv_out.weight": (19, 256, 1, 1),
        "conv_out16.conv_out.weight": (19, 64, 1, 1),
        "conv_out32.conv.bn.num_batches_tracked": (),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert "cp.resnet.layer1.0.downsample.0.weight" not in sd  # same shape: identity shortcut
    assert not any(k.startswith(("cp.resnet.fc", "sp.")) for k in sd)
    # ResNet-18 without fc (11,176,512) + ARMs, heads, FFM, outputs, counted by hand. As a cross-check,
    # 13,300,416 fp32 weights + 6,336 BN channels x (mean, var) = 53,252,352 bytes, just under the
    # 53,289,463-byte parsing_bisenet.pth (the rest is pickle framing).
    assert sum(p.numel() for p in net.parameters()) == 13_300_416


def test_forward_shapes(net):
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        out, out16, out32 = net(x)
        main = net(x, aux=False)
    assert out.shape == out16.shape == out32.shape == (2, 19, 128, 96)
    torch.testing.assert_close(main, out)


def test_parse_faces_returns_label_maps(net):
    faces = np.random.default_rng(0).integers(0, 256, (2, 80, 64, 3), dtype=np.uint8)
    labels = parse_faces(net, faces, size=128)
    assert labels.shape == (2, 80, 64) and labels.dtype == np.uint8
    assert labels.max() < 19
    single = parse_faces(net, faces[0], size=128)
    assert np.array_equal(single, labels[0])


def _synthetic_parsing():
    """A cartoon head: hair on top, skin with eyes/nose/mouth, glasses, an earring, hat, neck and cloth."""
    p = np.zeros((100, 100), np.uint8)
    p[10:30, 20:80] = LABEL["hair"]
    p[0:10, 20:80] = LABEL["hat"]
    p[30:80, 25:75] = LABEL["skin"]
    p[40:45, 30:40] = LABEL["l_eye"]
    p[40:45, 60:70] = LABEL["r_eye"]
    p[38:47, 28:42] = np.where(p[38:47, 28:42] == LABEL["l_eye"], LABEL["l_eye"], LABEL["eye_g"])
    p[50:60, 45:55] = LABEL["nose"]
    p[65:70, 40:60] = LABEL["u_lip"]
    p[45:55, 20:25] = LABEL["l_ear"]
    p[55:60, 20:25] = LABEL["ear_r"]
    p[80:90, 40:60] = LABEL["neck"]
    p[86:90, 42:58] = LABEL["neck_l"]
    p[90:100, :] = LABEL["cloth"]
    return p


def test_masks_on_synthetic_parsing():
    p = _synthetic_parsing()
    head, style, face = head_mask(p), styling_mask(p), face_mask(p)
    assert head.dtype == bool and head.shape == p.shape
    # head: face parts, ears, hair, hat, glasses, earring; not background, neck, necklace, cloth
    for name in ("skin", "l_eye", "r_eye", "nose", "u_lip", "l_ear", "hair", "hat", "eye_g", "ear_r"):
        assert head[p == LABEL[name]].all(), name
    for name in ("background", "neck", "neck_l", "cloth"):
        assert not head[p == LABEL[name]].any(), name
    # styling: hair and accessories only
    for name in ("hair", "hat", "eye_g", "ear_r", "neck_l"):
        assert style[p == LABEL[name]].all(), name
    assert not style[np.isin(p, [LABEL[n] for n in ("skin", "l_eye", "nose", "u_lip", "l_ear", "neck")])].any()
    assert not styling_mask(p, include_necklace=False)[p == LABEL["neck_l"]].any()
    # face = head minus styling, and it is exactly the identity-bearing classes
    assert np.array_equal(face, head & ~style)
    assert np.array_equal(face, np.isin(p, [LABEL[n] for n in bisenet.FACE_CLASSES]))
    assert head_mask(p, include_neck=True)[p == LABEL["neck"]].all()


def test_class_table():
    assert len(bisenet.CLASSES) == 19
    assert LABEL["skin"] == 1 and LABEL["eye_g"] == 6 and LABEL["hair"] == 17 and LABEL["hat"] == 18
