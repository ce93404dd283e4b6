import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ideud.models.gfpgan import GFPGANImage, GFPGANv1Clean, ModulatedConv2d  # noqa: E402

CONTRACT = Path(__file__).parent / "data" / "gfpgan_v1_clean_state_dict.json"


@pytest.fixture(scope="module")
def contract():
    return json.loads(CONTRACT.read_text())


def test_full_size_state_dict_matches_official_contract(contract):
    net = GFPGANv1Clean()  # v1.3/v1.4 defaults
    sd = net.state_dict()
    assert len(contract) == 285
    assert sorted(sd) == sorted(contract), (set(sd) ^ set(contract))
    wrong = {k: (list(sd[k].shape), v) for k, v in contract.items() if list(sd[k].shape) != v}
    assert not wrong
    # A checkpoint with exactly the contract's names and shapes loads strictly.
    ckpt = {k: torch.zeros(v) for k, v in contract.items()}
    net.load_state_dict(ckpt, strict=True)
    assert float(net.final_linear.weight.detach().abs().sum()) == 0.0


def test_narrow_model_keeps_key_names(contract):
    small = GFPGANv1Clean(narrow=0.125, num_style_feat=64).state_dict()
    assert sorted(small) == sorted(contract)
    # decoder width is narrow x official, and the U-Net is half the decoder (sft_half)
    assert small["stylegan_decoder.style_convs.13.bias"].shape[1] == 64 // 8
    assert small["conv_body_up.6.conv2.weight"].shape[0] == 32 // 8


@pytest.mark.parametrize("demodulate,sample_mode,k", [(True, "upsample", 3), (True, None, 3), (False, None, 1)])
def test_shared_modconv_equals_grouped(demodulate, sample_mode, k):
    torch.manual_seed(0)
    conv = ModulatedConv2d(24, 16, k, num_style_feat=32, demodulate=demodulate, sample_mode=sample_mode)
    x = torch.randn(3, 24, 16, 16)
    style = torch.randn(3, 32)  # three different styles: each sample needs its own weights
    with torch.no_grad():
        conv.mode = "grouped"
        ref = conv(x, style)
        conv.mode = "shared"
        got = conv(x, style)
    assert got.shape == ref.shape == (3, 16, 32 if sample_mode else 16, 32 if sample_mode else 16)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_shared_modconv_equals_grouped_whole_network():
    torch.manual_seed(1)
    net = GFPGANv1Clean(out_size=64, narrow=0.25, num_style_feat=64).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = net.set_modconv("grouped")(x)[0]
        got = net.set_modconv("shared")(x)[0]
    assert ref.shape == (2, 3, 64, 64)
    # The two samples differ, so a form that mixed styles across the batch would fail here.
    assert float((ref[0] - ref[1]).abs().max()) > 1e-2
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_stored_noise_is_deterministic_and_random_noise_is_not():
    torch.manual_seed(2)
    net = GFPGANv1Clean(out_size=32, narrow=0.25, num_style_feat=32).eval()
    with torch.no_grad():  # noise strengths are zero-initialised; give them a value so noise matters
        for name, p in net.named_parameters():
            if name.endswith(".weight") and p.shape == (1,):
                p.fill_(0.5)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = GFPGANImage(net)(x), GFPGANImage(net)(x)
        c = net(x, randomize_noise=True)[0]
    assert torch.equal(a, b)
    assert float((a - c).abs().max()) > 1e-3


def test_auxiliary_rgbs_only_on_request():
    net = GFPGANv1Clean(out_size=32, narrow=0.25, num_style_feat=32).eval()
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        _, none = net(x)
        _, rgbs = net(x, return_rgb=True)
    assert none == []
    assert [r.shape[-1] for r in rgbs] == [8, 16, 32]


def test_bad_modconv_mode_rejected():
    with pytest.raises(ValueError):
        GFPGANv1Clean(out_size=32, narrow=0.25, num_style_feat=32, modconv="fused")
