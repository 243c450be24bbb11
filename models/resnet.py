"""A plain ResNet-50 encoder (torchvision's, untrained) with the feature interface of ``Res2Net``.

The detector's comparison baseline: the same PanelNet heads on the encoder every detection paper starts from.
"""

from __future__ import annotations

import torch
from torch import nn

from models.registry import register_model
from models.res2net import BOTTLENECK_FEATURES


class ResNetEncoder(nn.Module):
    """torchvision ResNet-50 returning feature maps at strides 2, 4, 8, 16 and 32 (``feature_info``)."""

    def __init__(self, num_classes: int = 0, in_chans: int = 3) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        # Imported here, not with the module: torchvision is slow to import (see models/fpn.py).
        from torchvision.models import resnet50

        net = resnet50(weights=None, num_classes=max(num_classes, 1), zero_init_residual=True)
        if in_chans != 3:
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1, self.bn1, self.act1, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = net.fc if num_classes > 0 else nn.Identity()
        self.in_chans = in_chans
        self.feature_info = list(BOTTLENECK_FEATURES)
        self.num_features = self.feature_info[-1].num_chs

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32 (channels in ``feature_info``)."""
        stem = self.act1(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(stem))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [stem, c2, c3, c4, self.layer4(c4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.global_pool(self.forward_features(x)[-1]), 1))


@register_model
def resnet50(**kwargs) -> ResNetEncoder:
    """Plain ResNet-50 (7x7 stem, ReLU, BN -> activation), randomly initialised."""
    return ResNetEncoder(**kwargs)
