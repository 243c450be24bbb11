"""Res2Net / Res2NetPlus50 encoders: exact topology, parameter counts, numerics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from models.res2net import Bottle2neck


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def plus() -> nn.Module:
    torch.manual_seed(0)
    return models.create_model("res2netplus50", num_classes=1000).eval()


def test_registry_lists_required_names():
    names = models.list_models()
    assert {"res2netplus50", "res2net50_26w_4s", "panelnet_res2netplus50"} <= set(names)


def test_unknown_name_says_what_exists():
    with pytest.raises(models.UnknownModelError, match="unknown model 'resnet9000'.*res2netplus50"):
        models.create_model("resnet9000")


def test_exact_parameter_counts(plus):
    assert n_params(plus) == 25_746_064
    assert n_params(models.create_model("res2net50_26w_4s", num_classes=1000)) == 25_699_120


def test_plus_stem_is_three_3x3_convs_with_mish_before_bn(plus):
    kinds = [type(m).__name__ for m in plus.conv1]
    assert kinds == ["Conv2d", "Mish", "BatchNorm2d", "Conv2d", "Mish", "BatchNorm2d", "Conv2d"]
    convs = [m for m in plus.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 32, (3, 3), (2, 2)), (32, 64, (3, 3), (1, 1)), (64, 64, (3, 3), (1, 1))
    ]
    assert isinstance(plus.act1, nn.Mish) and plus.act_before_norm


def test_plus_block_applies_mish_before_bn_after_first_1x1(plus):
    block = plus.layer2[1]
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
             for name, m in (("conv1", block.conv1), ("act1", block.act1), ("bn1", block.bn1))]
    with torch.no_grad():
        block(torch.randn(1, 512, 8, 8))
    for h in hooks:
        h.remove()
    assert calls == ["conv1", "act1", "bn1"]


def test_stage_and_normal_blocks(plus):
    widths = [plus.layer1[0].width, plus.layer2[0].width, plus.layer3[0].width, plus.layer4[0].width]
    assert widths == [26, 52, 104, 208]
    for stage, depth in zip((plus.layer1, plus.layer2, plus.layer3, plus.layer4), (3, 4, 6, 3)):
        assert len(stage) == depth
        assert stage[0].is_stage_block and stage[0].pool is not None
        assert all(not b.is_stage_block and b.pool is None for b in stage[1:])
    assert plus.layer2[0].pool.stride == 2 and plus.layer1[0].pool.stride == 1


def test_feature_maps_strides_and_channels(plus):
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        features = plus.forward_features(x)
    for f, info in zip(features, plus.feature_info):
        assert f.shape == (1, info.num_chs, 96 // info.reduction, 128 // info.reduction)
    assert [i.reduction for i in plus.feature_info] == [2, 4, 8, 16, 32]
    assert [i.num_chs for i in plus.feature_info] == [64, 256, 512, 1024, 2048]


def test_forward_backward_with_in_chans_and_classes():
    model = models.create_model("res2netplus50", num_classes=5, in_chans=4).train()
    out = model(torch.randn(2, 4, 64, 64))
    assert out.shape == (2, 5)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.conv1[0].weight.grad.abs().sum() > 0


def test_channels_last_matches_contiguous(plus):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = plus(x)
        cl_model = models.create_model("res2netplus50", num_classes=1000)
        cl_model.load_state_dict(plus.state_dict())
        cl_model = cl_model.eval().to(memory_format=torch.channels_last)
        result = cl_model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_close_to_fp32(plus):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = plus(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = plus(x).float()
    cosine = torch.nn.functional.cosine_similarity(low.flatten(), reference.flatten(), dim=0)
    assert cosine > 0.99
    assert (low - reference).abs().max() < 0.1 * reference.abs().max()


def test_official_variant_matches_timm_layer_by_layer():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    theirs = timm.create_model("res2net50_26w_4s", num_classes=1000, pretrained=False).eval()
    ours = models.create_model("res2net50_26w_4s", num_classes=1000).eval()
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == their_shapes
    their_layers = [(n, type(m).__name__) for n, m in theirs.named_modules() if not list(m.children())
                    and isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.AvgPool2d, nn.MaxPool2d))]
    our_layers = [(n, type(m).__name__) for n, m in ours.named_modules() if not list(m.children())
                  and isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.AvgPool2d, nn.MaxPool2d))]
    assert our_layers == their_layers
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_bottleneck_never_adds_in_place():
    block = Bottle2neck(256, 64, act_layer=nn.ReLU)
    x = torch.randn(1, 256, 8, 8, requires_grad=True)
    block(x).sum().backward()  # an in-place add before ReLU would raise here
    assert x.grad is not None
