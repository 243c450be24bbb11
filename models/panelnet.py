"""PanelNet: an encoder (Res2NetPlus50 in the product) with a tile classifier head and an FPN segmentation decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.fpn import FeaturePyramid
from models.registry import create_model, register_model

SIZE_MULTIPLE = 32  # the encoder's output stride


@dataclass
class PanelOutput:
    """Raw model outputs: one tile logit per image and, where computed, per-pixel logits at input size."""

    tile_logit: torch.Tensor  # (N,)
    mask_logit: torch.Tensor | None  # (N, 1, H, W)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegmentationDecoder(nn.Module):
    """FPN over strides 4..32, merged at stride 4, refined with the stride-2 stem features."""

    def __init__(self, feature_channels: list[int], channels: int = 128) -> None:
        super().__init__()
        stem_chs, *pyramid_chs = feature_channels
        self.fpn = FeaturePyramid(pyramid_chs, channels)
        self.level_heads = nn.ModuleList(_conv_bn_relu(channels, channels) for _ in pyramid_chs)
        self.stem_proj = _conv_bn_relu(stem_chs, channels // 4)
        self.refine = _conv_bn_relu(channels + channels // 4, channels // 2)
        self.logit = nn.Conv2d(channels // 2, 1, kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        stem, *pyramid = features
        levels = self.fpn(pyramid)
        size4 = pyramid[0].shape[-2:]
        merged = sum(
            F.interpolate(head(p), size=size4, mode="bilinear", align_corners=False) if i else head(p)
            for i, (head, p) in enumerate(zip(self.level_heads, levels))
        )
        merged = F.interpolate(merged, size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return self.logit(self.refine(torch.cat([merged, self.stem_proj(stem)], dim=1)))


class PanelNet(nn.Module):
    """Panel detector: ``encoder`` features -> tile logit ("contains panels") and per-pixel panel logits.

    Inputs of any size are zero-padded (zero is the band mean after normalisation) up to a multiple of 32
    inside the model and the mask is cropped back, so callers never see the padding.
    """

    def __init__(
        self, encoder: str = "res2netplus50", in_chans: int = 3, decoder_channels: int = 128, drop_rate: float = 0.2
    ) -> None:
        super().__init__()
        self.encoder = create_model(encoder, num_classes=0, in_chans=in_chans)
        channels = [info.num_chs for info in self.encoder.feature_info]
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop_rate), nn.Linear(channels[-1], 1)
        )
        self.decoder = SegmentationDecoder(channels, decoder_channels)

    @staticmethod
    def _pad(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of the padded input (strides 2..32)."""
        return self.encoder.forward_features(self._pad(x))

    def classify(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Tile logits (N,) from encoder features."""
        return self.classifier(features[-1]).squeeze(1)

    def window_logits(self, features: list[torch.Tensor], window: int) -> torch.Tensor:
        """Tile logits (N, H - window + 1, W - window + 1), in float32, of every ``window`` x ``window`` window
        of the (H, W) stride-32 feature map, each judged as a tile of that size would be in inference.

        The head averages the features and applies a linear layer, so the linear layer on every cell, averaged
        over a window, is exactly the head on that window (its dropout does nothing in inference).
        """
        linear = self.classifier[-1]
        cells = F.conv2d(features[-1], linear.weight[:, :, None, None], linear.bias)
        return F.avg_pool2d(cells.float(), window, stride=1)[:, 0]

    def segment(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Per-pixel logits (N, 1, *size) from encoder features, cropped to the unpadded input size."""
        logits = self.decoder(features)
        padded = (features[0].shape[-2] * 2, features[0].shape[-1] * 2)
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        return logits[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor, with_mask: bool = True,
                features: list[torch.Tensor] | None = None) -> PanelOutput:
        """Outputs for ``x``; ``features``, where given, are ``encode(x)`` computed already (one frozen encoder's
        pass shared by two heads), and the encoder does not run again."""
        features = self.encode(x) if features is None else features
        mask = self.segment(features, (x.shape[-2], x.shape[-1])) if with_mask else None
        return PanelOutput(self.classify(features), mask)


@register_model
def panelnet_res2netplus50(**kwargs) -> PanelNet:
    """The product's detector: Res2NetPlus50 encoder, tile classifier, FPN decoder."""
    return PanelNet(encoder="res2netplus50", **kwargs)


@register_model
def panelnet_res2net50(**kwargs) -> PanelNet:
    """Detector on the official Res2Net-50 26w x 4s encoder (for comparison)."""
    return PanelNet(encoder="res2net50_26w_4s", **kwargs)


@register_model
def panelnet_resnet50(**kwargs) -> PanelNet:
    """Detector on a plain ResNet-50 encoder: the baseline the product's encoder is compared with."""
    return PanelNet(encoder="resnet50", **kwargs)


@register_model
def panelnet(**kwargs) -> PanelNet:
    """Detector on any registered encoder, named by ``encoder`` (default ``res2netplus50``)."""
    return PanelNet(**kwargs)
