"""The learned Step II network: a small U-Net with a style-modulated decoder, and its ONNX export.

Input and output: (N, 3, 128, 128) RGB in [-1, 1], a face aligned on the FFHQ 5-point template
scaled to 128 (models/face_align.align_face(..., size=128)). The network predicts a residual that
is added to its input: at initialisation (last layer zero) it hands the render back unchanged, so
an undertrained network degrades gracefully toward the render instead of inventing a face.

    encoder   conv 3->w0 (128), then 4 strided 3x3 convs: w0->w1 (64) ->w2 (32) ->w3 (16) ->w4 (8)
    style     global average of the bottleneck -> MLP -> style vector (STYLE_DIM)
    decoder   per level: bilinear x2, concat the encoder skip, 3x3 conv, then the style modulates
              the channels (scale 1 + a(s), shift b(s): FiLM, a cheap stand-in for StyleGAN2's
              modulated conv that exports to plain ONNX ops), LeakyReLU
    head      3x3 conv -> 3, tanh residual

Widths default to (12, 24, 48, 96, 128): 477 k parameters, ~12 ms per face batched on one
onnxruntime CPU thread here.

The discriminators used only for training (whole face, and the eye/mouth components whose
features give the Gram style loss) are here too, so one file holds everything of the network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 128
STYLE_DIM = 64
WIDTHS = (12, 24, 48, 96, 128)

# component boxes (x0, y0, x1, y1) in the 128 aligned frame: FFHQ template eyes at (48.2, 60.0) and
# (79.7, 60.0), mouth corners at y 92.8; boxes 32 px (eyes) and 48x32 (mouth) around them
EYE_BOXES = ((32, 44, 64, 76), (64, 44, 96, 76))
MOUTH_BOX = (40, 76, 88, 108)


def _act(x):
    return F.leaky_relu(x, 0.2)


class StyleUNet(nn.Module):
    def __init__(self, widths: Sequence[int] = WIDTHS, style_dim: int = STYLE_DIM):
        super().__init__()
        w = list(widths)
        self.widths = tuple(w)
        self.stem = nn.Conv2d(3, w[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1) for i in range(len(w) - 1))
        self.style = nn.Sequential(nn.Linear(w[-1], style_dim), nn.LeakyReLU(0.2), nn.Linear(style_dim, style_dim))
        self.up = nn.ModuleList()
        self.film = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):  # from the bottleneck up: (w[i] + skip w[i-1]) -> w[i-1]
            self.up.append(nn.Conv2d(w[i] + w[i - 1], w[i - 1], 3, padding=1))
            film = nn.Linear(style_dim, 2 * w[i - 1])
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)  # identity modulation at the start
            self.film.append(film)
        self.head = nn.Conv2d(w[0], 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        skips = [_act(self.stem(x))]
        for conv in self.down:
            skips.append(_act(conv(skips[-1])))
        h = skips[-1]
        s = self.style(h.mean(dim=(2, 3)))
        for k, (conv, film) in enumerate(zip(self.up, self.film)):
            skip = skips[-2 - k]
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = conv(torch.cat([h, skip], 1))
            a, b = film(s).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
            h = _act(h * (1.0 + a) + b)
        return torch.clamp(x + torch.tanh(self.head(h)), -1.0, 1.0)


class Discriminator(nn.Module):
    """A small conv discriminator; returns (logit per image, list of intermediate features)."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 96, 128)):
        super().__init__()
        chans = [3, *widths]
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 4 if i else 3, stride=2 if i else 1,
                                             padding=1) for i in range(len(widths)))
        self.out = nn.Linear(widths[-1], 1)

    def forward(self, x):
        feats = []
        for conv in self.convs:
            x = _act(conv(x))
            feats.append(x)
        return self.out(x.mean(dim=(2, 3))).squeeze(1), feats


def crop(x, box):
    x0, y0, x1, y1 = box
    return x[:, :, y0:y1, x0:x1]


def gram(f):
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def export_onnx(net: StyleUNet, path: Path, opset: int = 17) -> None:
    """Trace the generator to ONNX with a dynamic batch axis ("input" -> "output")."""
    net = net.eval()
    dummy = torch.zeros(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.onnx.export(net, (dummy,), str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
