"""dlib's face ResNet on onnxruntime (models/dlib_resnet_onnx.py) against dlib itself, on the
chips the privacy guard embeds (real build-split portraits, every guard view), plus the cache."""
from __future__ import annotations

import numpy as np
import pytest

from ideud.models import dlib_resnet_onnx as dro
from ideud.models.recognizer import FaceRecognizer, default_recognizer
from ideud.models.recognizers import TwoRecognizers, dlib_views
from tests.portrait_faces import PORTRAITS, build_portrait_faces

needs_portraits = pytest.mark.skipif(PORTRAITS is None, reason="public-domain portraits not found")

# measured 3.3e-7 (descriptor values) and 6e-7 (distances) on these chips: float32 rounding only
MAX_DESCRIPTOR_DIFF = 1e-5
MAX_DISTANCE_DIFF = 1e-5


@pytest.fixture(scope="module")
def dat_bytes():
    return dro.dat_path().read_bytes()


@pytest.fixture(scope="module")
def onnx_net(tmp_path_factory):
    return dro.DlibResnetOnnx(cache_dir=tmp_path_factory.mktemp("dlib_onnx"))


@pytest.fixture(scope="module")
def guard_chips():
    rec = default_recognizer()
    faces = build_portrait_faces(4, stride=131)
    assert len(faces) >= 3
    return [c for rgb, lm in faces for c in dlib_views(rec, rgb, lm, full=True)]


def test_architecture_read_from_the_dat(dat_bytes):
    net = dro.parse_dat(dat_bytes)
    assert net.input_size == 150
    np.testing.assert_allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    convs = [n for n in net.nodes if not isinstance(n, str) and n.kind == "con"]
    assert len(convs) == 29
    assert convs[0].arrays["w"].shape == (32, 3, 7, 7) and convs[-1].arrays["w"].shape == (256, 256, 3, 3)
    assert dro._signature(net.nodes) == dro._expected_signature()


@needs_portraits
def test_descriptors_equal_dlibs(onnx_net, guard_chips):
    ref = default_recognizer().embed_chips(guard_chips)
    got = onnx_net.embed_chips(guard_chips)
    assert got.shape == ref.shape == (len(guard_chips), 128)
    assert np.abs(got - ref).max() < MAX_DESCRIPTOR_DIFF
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=2)
    d_got = np.linalg.norm(got[:, None] - got[None], axis=2)
    assert np.abs(d_got - d_ref).max() < MAX_DISTANCE_DIFF
    assert d_ref.max() > 0.6  # the set holds different people, not only near-duplicates
    # batched or one at a time: the same numbers
    one = np.concatenate([onnx_net.embed_chips([c]) for c in guard_chips[:3]])
    assert np.abs(one - got[:3]).max() < 1e-6


@needs_portraits
def test_two_threads_give_the_same_descriptors_bit_for_bit(onnx_net, guard_chips, tmp_path):
    """The guard's sessions run on two threads where the machine has them (models/onnx_cpu.py): its
    decisions, so the output, must not depend on that."""
    one = dro.DlibResnetOnnx(threads=1, cache_dir=tmp_path).embed_chips(guard_chips)
    two = dro.DlibResnetOnnx(threads=2, cache_dir=tmp_path).embed_chips(guard_chips)
    assert np.array_equal(one, two)


def test_build_is_reproducible_and_valid_onnx(dat_bytes):
    a = dro.build_onnx(dro.parse_dat(dat_bytes))
    assert a == dro.build_onnx(dro.parse_dat(dat_bytes))
    onnx = pytest.importorskip("onnx")  # not needed at run time; here it checks the hand-written protobuf
    model = onnx.load_from_string(a)
    onnx.checker.check_model(model, full_check=True)
    assert model.SerializeToString() == a  # onnx's own serializer writes the same bytes
    assert [o.name for o in model.graph.output] == ["descriptors"]
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 29


def test_corrupt_cache_is_rebuilt(tmp_path):
    path = dro.cached_onnx(cache_dir=tmp_path)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped weight byte still parses: only the hash sees it
    path.write_bytes(bytes(damaged))
    assert dro._verified(path) is None
    assert dro.cached_onnx(cache_dir=tmp_path) == path
    assert path.read_bytes() == good
    path.write_bytes(good[:1000])
    assert dro.onnx_bytes(cache_dir=tmp_path) == good
    blocked = tmp_path / "a_file"
    blocked.write_bytes(b"")
    assert dro.onnx_bytes(cache_dir=blocked / "cache") == good  # no cache possible: built in memory


def test_truncated_dat_is_refused(dat_bytes, tmp_path):
    with pytest.raises(dro.DatFormatError):
        dro.parse_dat(dat_bytes[: len(dat_bytes) // 3])
    with pytest.raises(dro.DatFormatError):
        dro.parse_dat(dat_bytes + b"\0")
    bad = tmp_path / dro.DAT_NAME
    bad.write_bytes(dat_bytes[:5000])
    rec = FaceRecognizer(tmp_path)  # a models folder whose ResNet .dat is broken
    embed = dro.dlib_embedder(rec)  # the session is made on a thread: the warning comes with the first embedding
    chip = np.zeros((dro.CHIP, dro.CHIP, 3), np.uint8)
    used = []
    rec.embed_chips = lambda chips: used.append(len(chips)) or np.zeros((len(chips), dro.DIM), np.float32)
    with pytest.warns(RuntimeWarning, match="using dlib"):
        embed([chip])
    embed([chip, chip])  # dlib's own path each time (which then fails on the file, as before), one warning
    assert used == [1, 2]


@needs_portraits
def test_guard_embeds_through_onnx(guard_chips):
    two = TwoRecognizers()
    assert two.dlib_embed != two.dlib.embed_chips
    got = two.dlib_embed(guard_chips[:2])
    ref = two.dlib.embed_chips(guard_chips[:2])
    assert np.abs(got - ref).max() < MAX_DESCRIPTOR_DIFF
