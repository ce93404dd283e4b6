"""BiSeNet face parsing (19 CelebAMask-HQ classes), key-compatible with facexlib's `parsing_bisenet.pth`.

The network is the face-parsing.PyTorch / facexlib layout: a ResNet-18
context path (written here, no torchvision), attention refinement modules, a
feature fusion module and three output heads. Only the main head is needed
at inference; the two auxiliary heads stay because they are in the checkpoint.

The mask helpers turn a label map into the regions the pipeline needs:
  * `head_mask`: everything that belongs to the head (face, ears, hair, hat,
    glasses, earrings), i.e. where a restored face may replace pixels;
  * `styling_mask`: hair and accessories (hat, glasses, earrings, necklace)
    that are not identity geometry and are kept from the original frame;
  * `face_mask`: the head minus styling.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Label order of CelebAMask-HQ as used by face-parsing.PyTorch and facexlib.
CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
LABEL = {name: i for i, name in enumerate(CLASSES)}

FACE_CLASSES = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "mouth", "u_lip", "l_lip")
STYLING_CLASSES = ("hair", "hat", "eye_g", "ear_r", "neck_l")
# Necklaces hang below the head, so they are styling but not head.
HEAD_CLASSES = FACE_CLASSES + ("hair", "hat", "eye_g", "ear_r")

# ImageNet statistics: the parser was trained on ImageNet-normalised RGB.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chan, out_chan, kernel_size=ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block; `downsample` is a 1x1 conv + BN when the shape changes."""

    def __init__(self, in_chan: int, out_chan: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chan, out_chan, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chan)
        self.conv2 = nn.Conv2d(out_chan, out_chan, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chan)
        self.downsample = None
        if in_chan != out_chan or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chan, out_chan, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chan),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.relu(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _basic_layer(in_chan: int, out_chan: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_chan, out_chan, stride)]
    layers += [BasicBlock(out_chan, out_chan, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet18(nn.Module):
    """ResNet-18 trunk without the classifier; returns the 1/8, 1/16 and 1/32 features."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _basic_layer(64, 64, 2, 1)
        self.layer2 = _basic_layer(64, 128, 2, 2)
        self.layer3 = _basic_layer(128, 256, 2, 2)
        self.layer4 = _basic_layer(256, 512, 2, 2)

    def forward(self, x: torch.Tensor):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class AttentionRefinementModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, out_chan, ks=3, stride=1, padding=1)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, ks=3, stride=1, padding=1)
        self.conv_head16 = ConvBNReLU(128, 128, ks=3, stride=1, padding=1)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor):
        feat8, feat16, feat32 = self.resnet(x)
        # Global context, broadcast back over the 1/32 grid.
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + avg
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_chan, out_chan, ks=1, stride=1, padding=0)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, kernel_size=1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, in_chan: int, mid_chan: int, num_class: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, mid_chan, ks=3, stride=1, padding=1)
        self.conv_out = nn.Conv2d(mid_chan, num_class, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor):
        feat = self.conv(x)
        return self.conv_out(feat), feat


class BiSeNet(nn.Module):
    """Face parser: (N, 3, H, W) ImageNet-normalised RGB -> logits (N, num_class, H, W) x3 heads."""

    def __init__(self, num_class: int = 19):
        super().__init__()
        self.cp = ContextPath()
        # The 1/8 ResNet feature stands in for the original spatial path.
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, num_class)
        self.conv_out16 = BiSeNetOutput(128, 64, num_class)
        self.conv_out32 = BiSeNetOutput(128, 64, num_class)

    def forward(self, x: torch.Tensor, aux: bool = True):
        h, w = x.shape[2:]
        feat_res8, feat_cp8, feat_cp16 = self.cp(x)
        out = self.conv_out(self.ffm(feat_res8, feat_cp8))[0]
        out = F.interpolate(out, (h, w), mode="bilinear", align_corners=True)
        if not aux:
            return out
        out16 = F.interpolate(self.conv_out16(feat_cp8)[0], (h, w), mode="bilinear", align_corners=True)
        out32 = F.interpolate(self.conv_out32(feat_cp16)[0], (h, w), mode="bilinear", align_corners=True)
        return out, out16, out32


@torch.no_grad()
def parse_faces(model: BiSeNet, faces_rgb: np.ndarray, size: int = 512) -> np.ndarray:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB faces -> (N, H, W) or (H, W) uint8 label maps.

    Faces are resized to `size` (the parser was trained at 512) and the labels
    resized back with nearest neighbour.
    """
    single = faces_rgb.ndim == 3
    batch = faces_rgb[None] if single else faces_rgb
    n, h, w = batch.shape[:3]
    param = next(model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(param.device).permute(0, 3, 1, 2).float() / 255.0
    if (h, w) != (size, size):
        x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=x.device).view(1, 3, 1, 1)
    logits = model((x - mean) / std, aux=False).float()
    labels = logits.argmax(dim=1, keepdim=True).to(torch.uint8)
    if (h, w) != (size, size):
        labels = F.interpolate(labels.float(), (h, w), mode="nearest").to(torch.uint8)
    labels = labels[:, 0].cpu().numpy()
    return labels[0] if single else labels


def class_mask(parsing: np.ndarray, names: Iterable[str]) -> np.ndarray:
    """Boolean mask of the pixels whose label is one of `names`."""
    ids = [LABEL[n] for n in names]
    return np.isin(parsing, ids)


def head_mask(parsing: np.ndarray, include_neck: bool = False) -> np.ndarray:
    """Pixels of the head: face parts, ears, hair, hat, glasses and earrings."""
    names = HEAD_CLASSES + (("neck",) if include_neck else ())
    return class_mask(parsing, names)


def styling_mask(parsing: np.ndarray, include_necklace: bool = True) -> np.ndarray:
    """Hair and accessories (hat, glasses, earrings, optionally necklace)."""
    names = STYLING_CLASSES if include_necklace else tuple(n for n in STYLING_CLASSES if n != "neck_l")
    return class_mask(parsing, names)


def face_mask(parsing: np.ndarray) -> np.ndarray:
    """The identity-bearing face: the head without its styling."""
    return head_mask(parsing) & ~styling_mask(parsing)
