"""GFPGAN v1 "clean" (v1.3 / v1.4): U-Net degradation remover + StyleGAN2 decoder with CS-SFT.

The `state_dict()` names and shapes are the contract with the released
`params_ema` weights (see tests/data/gfpgan_v1_clean_state_dict.json); do not
rename attributes. `narrow` scales every channel count so tests can build a
small model with the same key names.

ModulatedConv2d has two numerically equivalent forms:
  * "grouped" (the official one): build one weight per sample and run a
    grouped convolution with groups=batch;
  * "shared": scale the input channels by the style, convolve with the one
    shared weight, then scale the output channels by the demodulation factor.
    One dense conv serves the whole batch, which is faster for batch > 1,
    plays well with cuDNN/TensorRT kernels and exports to ONNX with a dynamic
    batch (groups=batch cannot be dynamic in ONNX).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

MODCONV_MODES = ("grouped", "shared")


class NormStyleCode(nn.Module):
    """Pixel norm of the style code (used by the mapping MLP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, bilinear resampling ("clean" variant, no custom CUDA ops)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        demodulate: bool = True,
        sample_mode: Optional[str] = None,
        eps: float = 1e-8,
        mode: str = "grouped",
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.sample_mode = sample_mode
        self.eps = eps
        self.padding = kernel_size // 2
        self.mode = mode

        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        # Styles start at 1 so that a fresh (random) network passes features through unscaled.
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.constant_(self.modulation.bias, 1.0)
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(in_channels * kernel_size**2)
        )

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.sample_mode == "upsample":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if self.sample_mode == "downsample":
            return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        style = self.modulation(style)  # (b, in_channels)
        if self.mode == "shared":
            return self._forward_shared(x, style)
        return self._forward_grouped(x, style)

    def _forward_grouped(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        weight = self.weight * style.view(b, 1, c, 1, 1)  # (b, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(b, self.out_channels, 1, 1, 1)
        weight = weight.view(b * self.out_channels, c, self.kernel_size, self.kernel_size)

        x = self._resample(x)
        h, w = x.shape[2:]
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=self.padding, groups=b)
        return out.view(b, self.out_channels, *out.shape[2:])

    def _forward_shared(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        weight = self.weight[0]  # (out, in, k, k)
        if self.demodulate:
            # Demodulation cancels any per-sample style scale (up to eps); bringing
            # styles to max|s| = 1 keeps x * style inside fp16 range (TensorRT fp16,
            # autocast) at the cost of one tiny reduction.
            style = style / style.abs().amax(dim=1, keepdim=True).clamp_min(1e-4)
        # Per-channel scaling commutes with bilinear resampling, so scale before
        # upsampling (4x fewer multiplies). Indexing instead of view(b, ...)
        # keeps the exported graph free of batch-size constants.
        x = x * style[:, :, None, None]
        out = F.conv2d(self._resample(x), weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k} (W[o,i,k] s[i])^2 = sum_i s[i]^2 * sum_k W[o,i,k]^2
            w_sq = weight.pow(2).sum([2, 3])  # (out, in)
            demod = torch.rsqrt(style.pow(2) @ w_sq.t() + self.eps)  # (b, out)
            out = out * demod[:, :, None, None]
        return out


class StyleConv(nn.Module):
    """Modulated conv + noise injection + bias + leaky ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True, sample_mode=None):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, num_style_feat, demodulate=demodulate, sample_mode=sample_mode
        )
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.activate = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        # sqrt(2) is the gain the clean variant folds in for the missing fused leaky-ReLU scale.
        out = self.modulated_conv(x, style) * 2**0.5
        if noise is None:
            b, _, h, w = out.shape
            noise = out.new_empty(b, 1, h, w).normal_()
        out = out + self.weight * noise
        out = out + self.bias
        return self.activate(out)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), added to the upsampled previous RGB."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(
            in_channels, 3, kernel_size=1, num_style_feat=num_style_feat, demodulate=False, sample_mode=None
        )
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 start tensor of the decoder."""

    def __init__(self, num_channel: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


def _decoder_channels(channel_multiplier: int, narrow: float) -> dict:
    return {
        "4": int(512 * narrow),
        "8": int(512 * narrow),
        "16": int(512 * narrow),
        "32": int(512 * narrow),
        "64": int(256 * channel_multiplier * narrow),
        "128": int(128 * channel_multiplier * narrow),
        "256": int(64 * channel_multiplier * narrow),
        "512": int(32 * channel_multiplier * narrow),
        "1024": int(16 * channel_multiplier * narrow),
    }


class StyleGAN2GeneratorCSFT(nn.Module):
    """StyleGAN2 "clean" generator whose features are modulated by the U-Net's SFT conditions."""

    def __init__(self, out_size=512, num_style_feat=512, num_mlp=8, channel_multiplier=2, narrow=1.0, sft_half=True):
        super().__init__()
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half

        # Unused when input_is_latent (GFPGAN's case) but part of the checkpoint.
        style_mlp_layers = [NormStyleCode()]
        for _ in range(num_mlp):
            style_mlp_layers += [nn.Linear(num_style_feat, num_style_feat), nn.LeakyReLU(0.2, inplace=True)]
        self.style_mlp = nn.Sequential(*style_mlp_layers)

        channels = _decoder_channels(channel_multiplier, narrow)
        self.channels = channels
        self.constant_input = ConstantInput(channels["4"], size=4)
        self.style_conv1 = StyleConv(channels["4"], channels["4"], 3, num_style_feat, demodulate=True, sample_mode=None)
        self.to_rgb1 = ToRGB(channels["4"], num_style_feat, upsample=False)

        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2

        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise{layer_idx}", torch.randn(1, 1, resolution, resolution))

        in_channels = channels["4"]
        for i in range(3, self.log_size + 1):
            out_channels = channels[f"{2**i}"]
            self.style_convs.append(
                StyleConv(in_channels, out_channels, 3, num_style_feat, demodulate=True, sample_mode="upsample")
            )
            self.style_convs.append(
                StyleConv(out_channels, out_channels, 3, num_style_feat, demodulate=True, sample_mode=None)
            )
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels

    def forward(
        self,
        latent: torch.Tensor,
        conditions: list,
        randomize_noise: bool = False,
    ) -> torch.Tensor:
        """latent: (b, num_latent, num_style_feat) W+ codes; conditions: [scale, shift] per U-Net level."""
        if randomize_noise:
            noise = [None] * self.num_layers
        else:
            noise = [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])

        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(
            self.style_convs[::2], self.style_convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv1(out, latent[:, i], noise=noise1)
            if i < len(conditions):
                scale, shift = conditions[i - 1], conditions[i]
                if self.sft_half:
                    # CS-SFT: half of the channels keep the generative prior untouched.
                    out_same, out_sft = torch.split(out, out.size(1) // 2, dim=1)
                    out = torch.cat([out_same, out_sft * scale + shift], dim=1)
                else:
                    out = out * scale + shift
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


class ResBlock(nn.Module):
    """Residual block with bilinear down/up-sampling (U-Net of the clean variant)."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', not {mode!r}")
        self.scale_factor = 0.5 if mode == "down" else 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), negative_slope=0.2)
        out = F.interpolate(out, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        out = F.leaky_relu(self.conv2(out), negative_slope=0.2)
        x = F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return out + self.skip(x)


class GFPGANv1Clean(nn.Module):
    """GFPGAN v1 clean: 512x512 face in [-1, 1] -> restored 512x512 face in (about) [-1, 1]."""

    def __init__(
        self,
        out_size: int = 512,
        num_style_feat: int = 512,
        channel_multiplier: int = 2,
        num_mlp: int = 8,
        input_is_latent: bool = True,
        different_w: bool = True,
        narrow: float = 1.0,
        sft_half: bool = True,
        modconv: str = "grouped",
    ):
        super().__init__()
        self.out_size = out_size
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.num_style_feat = num_style_feat
        self.config = dict(
            out_size=out_size, num_style_feat=num_style_feat, channel_multiplier=channel_multiplier,
            num_mlp=num_mlp, input_is_latent=input_is_latent, different_w=different_w, narrow=narrow,
            sft_half=sft_half,
        )

        # The U-Net runs at half the decoder's width; with sft_half its features
        # exactly fill the SFT half of each decoder layer.
        channels = _decoder_channels(channel_multiplier, narrow * 0.5)
        self.log_size = int(math.log2(out_size))
        first_out_size = 2**self.log_size

        self.conv_body_first = nn.Conv2d(3, channels[f"{first_out_size}"], 1)

        in_channels = channels[f"{first_out_size}"]
        self.conv_body_down = nn.ModuleList()
        for i in range(self.log_size, 2, -1):
            out_channels = channels[f"{2 ** (i - 1)}"]
            self.conv_body_down.append(ResBlock(in_channels, out_channels, mode="down"))
            in_channels = out_channels

        self.final_conv = nn.Conv2d(in_channels, channels["4"], 3, 1, 1)

        in_channels = channels["4"]
        self.conv_body_up = nn.ModuleList()
        for i in range(3, self.log_size + 1):
            out_channels = channels[f"{2**i}"]
            self.conv_body_up.append(ResBlock(in_channels, out_channels, mode="up"))
            in_channels = out_channels

        # Auxiliary RGB heads (training losses only) kept for the checkpoint.
        self.toRGB = nn.ModuleList(nn.Conv2d(channels[f"{2**i}"], 3, 1) for i in range(3, self.log_size + 1))

        num_latent = (self.log_size * 2 - 2) if different_w else 1
        self.final_linear = nn.Linear(channels["4"] * 4 * 4, num_latent * num_style_feat)

        self.stylegan_decoder = StyleGAN2GeneratorCSFT(
            out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
            channel_multiplier=channel_multiplier, narrow=narrow, sft_half=sft_half,
        )

        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for i in range(3, self.log_size + 1):
            out_channels = channels[f"{2**i}"]
            sft_out_channels = out_channels if sft_half else out_channels * 2
            for branch in (self.condition_scale, self.condition_shift):
                branch.append(
                    nn.Sequential(
                        nn.Conv2d(out_channels, out_channels, 3, 1, 1),
                        nn.LeakyReLU(0.2, True),
                        nn.Conv2d(out_channels, sft_out_channels, 3, 1, 1),
                    )
                )
        self.set_modconv(modconv)

    def set_modconv(self, mode: str) -> "GFPGANv1Clean":
        """Switch every modulated conv between the "grouped" (official) and "shared" forms."""
        if mode not in MODCONV_MODES:
            raise ValueError(f"modconv must be one of {MODCONV_MODES}, not {mode!r}")
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.mode = mode
        self.modconv = mode
        return self

    def forward(self, x: torch.Tensor, return_rgb: bool = False, randomize_noise: bool = False):
        """Returns (image, auxiliary_rgbs) like the official network.

        Defaults differ from the training code on purpose: the auxiliary RGB
        heads are skipped, and the decoder uses the checkpoint's stored noise
        so that the same face gives the same output in every frame (no
        flicker) and the graph has no random ops (ONNX, CUDA graphs).
        """
        conditions = []
        unet_skips = []
        out_rgbs = []

        feat = F.leaky_relu(self.conv_body_first(x), negative_slope=0.2)
        for down in self.conv_body_down:
            feat = down(feat)
            unet_skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), negative_slope=0.2)

        style_code = self.final_linear(feat.flatten(1))
        if self.different_w:
            style_code = style_code.view(style_code.size(0), -1, self.num_style_feat)
        else:
            style_code = style_code.unsqueeze(1).repeat(1, self.stylegan_decoder.num_latent, 1)
        if not self.input_is_latent:  # never the case for the released weights; kept as in the original
            style_code = self.stylegan_decoder.style_mlp(style_code)

        for i, up in enumerate(self.conv_body_up):
            feat = up(feat + unet_skips[i])
            conditions.append(self.condition_scale[i](feat))
            conditions.append(self.condition_shift[i](feat))
            if return_rgb:
                out_rgbs.append(self.toRGB[i](feat))

        image = self.stylegan_decoder(style_code, conditions, randomize_noise=randomize_noise)
        return image, out_rgbs


class GFPGANImage(nn.Module):
    """Inference view of a GFPGAN: tensor in, image tensor out (what engines run and export)."""

    def __init__(self, net: GFPGANv1Clean):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, return_rgb=False, randomize_noise=False)[0]
