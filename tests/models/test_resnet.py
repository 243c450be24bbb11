"""The plain ResNet-50 baseline encoder: torchvision's network behind the Res2Net feature interface."""

from __future__ import annotations

import torch
from torchvision.models import resnet50 as torchvision_resnet50

import models


def test_resnet50_is_torchvisions_network():
    torch.manual_seed(0)
    reference = torchvision_resnet50(weights=None).eval()
    encoder = models.create_model("resnet50", num_classes=1000).eval()
    encoder.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in encoder.parameters()) == 25_557_032
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), reference(x))


def test_resnet50_features_match_res2net_strides_and_channels():
    encoder = models.create_model("resnet50", num_classes=0, in_chans=4).eval()
    with torch.no_grad():
        features = encoder.forward_features(torch.randn(2, 4, 96, 96))
    assert [tuple(f.shape[1:]) for f in features] == [
        (info.num_chs, 96 // info.reduction, 96 // info.reduction) for info in encoder.feature_info
    ]
    assert [info.reduction for info in encoder.feature_info] == [2, 4, 8, 16, 32]


def test_panelnet_on_resnet50_gives_tile_and_pixel_logits_at_input_size():
    net = models.create_model("panelnet_resnet50").eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 101, 101))
    assert out.tile_logit.shape == (2,) and out.mask_logit.shape == (2, 1, 101, 101)
