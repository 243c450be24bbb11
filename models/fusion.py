"""Inference-only rewrites that keep a trained model's outputs and make fewer passes over memory.

``fuse_for_inference`` returns a copy of a model in which

- every BatchNorm that directly follows a convolution is folded into that convolution's weight and bias
  (torch's ``fuse_conv_bn_eval``; the Res2Net 3x3 branch convolutions, ``conv3``, the shortcut convolutions, the
  stem of the official order and the decoder's conv-BN-ReLU blocks), and
- every Mish -> BatchNorm pair of the Plus order becomes one ``MishAffine`` (Mish, then a per-channel
  scale and shift), which a compiler turns into one elementwise pass (with ``uses_fast_mish``); another
  activation before a BatchNorm is left as it is.

A BatchNorm after Mish is not folded into the convolution after it: those convolutions are zero-padded 3x3s (and
average pools and cumulative adds) whose borders would see the shift where the original sees zero.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.res2net import Bottle2neck, Res2Net

MISH_LINEAR_ABOVE = 20.0  # mish(x) == x in float32 above this


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish with a single exponential: tanh(softplus(x)) = n / (n + 2) with n = e^x (e^x + 2)."""
    e = torch.exp(torch.clamp(x, max=MISH_LINEAR_ABOVE))
    n = e * (e + 2.0)
    return torch.where(x > MISH_LINEAR_ABOVE, x, x * n / (n + 2.0))


class MishAffine(nn.Module):
    """``scale * mish(x) + shift`` per channel: Mish followed by an inference-mode BatchNorm.

    Mish is PyTorch's own kernel (fastest in eager) unless ``single_exp`` (see ``uses_fast_mish``).
    """

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))
        self.single_exp = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, mish(x) if self.single_exp else F.mish(x), self.scale)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an inference-mode BatchNorm."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


@torch.no_grad()
def mish_affine(bn: nn.BatchNorm2d) -> MishAffine:
    """The ``MishAffine`` equal to Mish followed by ``bn`` in inference mode."""
    return MishAffine(*_bn_affine(bn))


def _fuse_sequential(seq: nn.Sequential) -> None:
    """Fold conv -> BN and merge Mish -> BN among the direct children of ``seq``, in place."""
    children = list(seq.children())
    fused: list[nn.Module] = []
    i = 0
    while i < len(children):
        first = children[i]
        second = children[i + 1] if i + 1 < len(children) else None
        if isinstance(second, nn.BatchNorm2d) and isinstance(first, nn.Conv2d):
            fused.append(fuse_conv_bn_eval(first, second))
            i += 2
        elif isinstance(second, nn.BatchNorm2d) and isinstance(first, nn.Mish):
            fused.append(mish_affine(second))
            i += 2
        else:
            fused.append(first)
            i += 1
    seq._modules.clear()
    for index, module in enumerate(fused):
        seq.add_module(str(index), module)


def _fuse_block(block: Bottle2neck) -> None:
    """Fold the block's BatchNorms (an activation -> BatchNorm pair only when the activation is Mish)."""
    if not block.act_before_norm:
        block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
    elif isinstance(block.act1, nn.Mish):
        block.act1, block.bn1 = mish_affine(block.bn1), nn.Identity()
    block.convs = nn.ModuleList(fuse_conv_bn_eval(c, b) for c, b in zip(block.convs, block.bns))
    block.bns = nn.ModuleList(nn.Identity() for _ in block.bns)
    block.conv3, block.bn3 = fuse_conv_bn_eval(block.conv3, block.bn3), nn.Identity()


def _fuse_stem(encoder: Res2Net) -> None:
    """Fold the stem's last BatchNorm (after its activation only when that is Mish)."""
    if encoder.act_before_norm:
        if isinstance(encoder.act1, nn.Mish):
            encoder.act1, encoder.bn1 = mish_affine(encoder.bn1), nn.Identity()
    elif isinstance(encoder.conv1, nn.Conv2d):
        encoder.conv1, encoder.bn1 = fuse_conv_bn_eval(encoder.conv1, encoder.bn1), nn.Identity()
    else:
        encoder.conv1[-1], encoder.bn1 = fuse_conv_bn_eval(encoder.conv1[-1], encoder.bn1), nn.Identity()


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An inference-mode copy of ``model`` with BatchNorms folded away (see the module docstring).

    The copy must not be trained: its BatchNorms no longer exist.
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if isinstance(module, Bottle2neck):
            _fuse_block(module)
        elif isinstance(module, Res2Net):
            _fuse_stem(module)
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module)
    return fused.requires_grad_(False)


def uses_fast_mish(model: nn.Module) -> nn.Module:
    """Compute every Mish of ``model`` (in place) with the single-exponential formulation, for the compiler.

    Measured on a 2-core AVX512-BF16 CPU, one bf16 (8, 256, 64, 64) map: PyTorch's Mish kernel 15 ms eager and 9 ms
    compiled, this formulation 17.5 ms eager and 1.8 ms compiled (inductor fuses it into one vectorised pass);
    in fp32 eager it is 4x slower than the kernel, so eager models keep ``nn.Mish``.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Mish):
            setattr(model, name, FastMish())
        else:
            if isinstance(child, MishAffine):
                child.single_exp = True
            uses_fast_mish(child)
    return model


class FastMish(nn.Module):
    """``nn.Mish`` computed with one exponential (see ``mish``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)
