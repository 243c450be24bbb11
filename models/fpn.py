"""A feature pyramid network (Lin et al., 2017) with the module layout and initialisation of torchvision's.

Written here rather than taken from ``torchvision.ops.FeaturePyramidNetwork``: importing torchvision imports
``torch._dynamo`` too (``torchvision.ops.roi_align`` does, at import), which was measured to add 1.3 s to every
start of ``solarscan`` on a 2-core CPU, a quarter of scoring one small chip. The parameter names are torchvision's
(``inner_blocks.N.0``, ``layer_blocks.N.0``), so bundles load into either; a test checks the outputs agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeaturePyramid(nn.Module):
    """Lateral 1x1 convolutions, a nearest-neighbour top-down path and a 3x3 convolution on every merged level."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, out_channels, 1)) for c in in_channels)
        self.layer_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1)) for _ in in_channels
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """One map of ``out_channels`` per input level, at that level's size, finest first."""
        merged = self.inner_blocks[-1](features[-1])
        levels = [self.layer_blocks[-1](merged)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[i](features[i])
            merged = lateral + F.interpolate(merged, size=lateral.shape[-2:], mode="nearest")
            levels.insert(0, self.layer_blocks[i](merged))
        return levels
