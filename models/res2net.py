"""Res2Net encoder family: the official Res2Net-50 topology and the Res2NetPlus variant.

One network, two sets of options:
- ``res2net50_26w_4s``: 7x7 stem, ReLU, BatchNorm before the activation (parameter names follow timm so its
  weights load unchanged).
- ``res2netplus50``: three-conv 3x3 stem, Mish, activation before BatchNorm after the stem convs and after the
  first 1x1 convolution of every bottleneck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.registry import register_model


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map returned by ``forward_features``."""

    name: str
    num_chs: int
    reduction: int


# The feature maps of a 50-layer bottleneck network (expansion 4): its stem and its four stages.
BOTTLENECK_FEATURES = (
    FeatureInfo("stem", 64, 2),
    FeatureInfo("layer1", 256, 4),
    FeatureInfo("layer2", 512, 8),
    FeatureInfo("layer3", 1024, 16),
    FeatureInfo("layer4", 2048, 32),
)


def _act_norm(channels: int, act_layer: type[nn.Module], act_before_norm: bool) -> list[nn.Module]:
    """Activation and BatchNorm in the order the variant asks for."""
    act, norm = act_layer(), nn.BatchNorm2d(channels)
    return [act, norm] if act_before_norm else [norm, act]


class Bottle2neck(nn.Module):
    """Res2Net bottleneck (expansion 4) with ``scale`` groups of ``width`` channels.

    A "stage" block (first of each stage) strides every 3x3 convolution, skips the cumulative adds and
    average-pools the pass-through group; a normal block feeds each group the previous group's output.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 26,
        scale: int = 4,
        act_layer: type[nn.Module] = nn.ReLU,
        act_before_norm: bool = False,
    ) -> None:
        super().__init__()
        width = math.floor(planes * (base_width / 64.0))
        outplanes = planes * self.expansion
        self.width = width
        self.is_stage_block = stride > 1 or downsample is not None
        self.act_before_norm = act_before_norm

        self.conv1 = nn.Conv2d(inplanes, width * scale, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.act1 = act_layer()
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False) for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.acts = nn.ModuleList(act_layer() for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(kernel_size=3, stride=stride, padding=1) if self.is_stage_block else None
        self.conv3 = nn.Conv2d(width * scale, outplanes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.act3 = act_layer()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(self.act1(out)) if self.act_before_norm else self.act1(self.bn1(out))
        groups = torch.split(out, self.width, dim=1)
        outputs: list[torch.Tensor] = []
        branch = groups[0]
        for i, (conv, bn, act) in enumerate(zip(self.convs, self.bns, self.acts)):
            branch = groups[i] if i == 0 or self.is_stage_block else branch + groups[i]
            branch = act(bn(conv(branch)))
            outputs.append(branch)
        outputs.append(self.pool(groups[-1]) if self.pool is not None else groups[-1])
        out = self.bn3(self.conv3(torch.cat(outputs, dim=1)))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.act3(out + shortcut)  # out-of-place add: autograd-safe for any activation


class Res2Net(nn.Module):
    """Res2Net encoder with an optional linear classifier.

    ``forward_features`` returns feature maps at strides 2, 4, 8, 16 and 32, described by ``feature_info``.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_chans: int = 3,
        base_width: int = 26,
        scale: int = 4,
        deep_stem: bool = False,
        act_layer: type[nn.Module] = nn.ReLU,
        act_before_norm: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.act_before_norm = act_before_norm
        if deep_stem:
            self.conv1 = nn.Sequential(
                nn.Conv2d(in_chans, 32, 3, stride=2, padding=1, bias=False),
                *_act_norm(32, act_layer, act_before_norm),
                nn.Conv2d(32, 64, 3, stride=1, padding=1, bias=False),
                *_act_norm(64, act_layer, act_before_norm),
                nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False),
            )
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = act_layer()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        inplanes = 64
        stages = []
        for planes, depth, stride in zip((64, 128, 256, 512), layers, (1, 2, 2, 2)):
            outplanes = planes * Bottle2neck.expansion
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(outplanes),
            )
            blocks = [
                Bottle2neck(inplanes, planes, stride, downsample, base_width, scale, act_layer, act_before_norm)
            ]
            blocks += [
                Bottle2neck(outplanes, planes, 1, None, base_width, scale, act_layer, act_before_norm)
                for _ in range(depth - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            inplanes = outplanes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.feature_info = list(BOTTLENECK_FEATURES)
        self.num_features = inplanes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Bottle2neck):  # zero-init the last BN so every residual block starts as identity
                nn.init.zeros_(m.bn3.weight)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.bn1(self.act1(x)) if self.act_before_norm else self.act1(self.bn1(x))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32 (channels in ``feature_info``)."""
        stem = self.forward_stem(x)
        c2 = self.layer1(self.maxpool(stem))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [stem, c2, c3, c4, c5]

    def forward_head(self, last_feature: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.global_pool(last_feature), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])


@register_model
def res2net50_26w_4s(**kwargs) -> Res2Net:
    """Official Res2Net-50 26w x 4s: 7x7 stem, ReLU, BN -> activation."""
    return Res2Net(layers=(3, 4, 6, 3), base_width=26, scale=4, **kwargs)


@register_model
def res2netplus50(**kwargs) -> Res2Net:
    """Res2NetPlus50 26w x 4s: three-conv 3x3 stem, Mish, activation -> BN."""
    return Res2Net(
        layers=(3, 4, 6, 3), base_width=26, scale=4, deep_stem=True, act_layer=nn.Mish, act_before_norm=True,
        **kwargs,
    )


@register_model
def res2net_tiny(**kwargs) -> Res2Net:
    """One block per stage, same topology as ``res2netplus50``: for tests and quick experiments."""
    return Res2Net(
        layers=(1, 1, 1, 1), base_width=26, scale=4, deep_stem=True, act_layer=nn.Mish, act_before_norm=True,
        **kwargs,
    )
