"""PanelNet detector: tile classifier plus per-pixel decoder at input resolution."""

from __future__ import annotations

import pytest
import torch

import models


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return models.create_model("panelnet_res2netplus50").eval()


@pytest.mark.parametrize("size", [(64, 64), (101, 101), (70, 130)])
def test_outputs_at_input_size_for_any_size(detector, size):
    with torch.no_grad():
        out = detector(torch.randn(2, 3, *size))
    assert out.tile_logit.shape == (2,)
    assert out.mask_logit.shape == (2, 1, *size)


def test_classifier_only_skips_decoder(detector):
    with torch.no_grad():
        out = detector(torch.randn(1, 3, 64, 64), with_mask=False)
        full = detector(torch.randn(1, 3, 64, 64))
    assert out.mask_logit is None and full.mask_logit is not None


def test_encode_classify_segment_equal_forward(detector):
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        features = detector.encode(x)
        out = detector(x)
        torch.testing.assert_close(detector.classify(features), out.tile_logit)
        torch.testing.assert_close(detector.segment(features, (96, 96)), out.mask_logit)
        given = detector(x, features=features)  # features computed already: the encoder does not run again
        torch.testing.assert_close(given.tile_logit, out.tile_logit)
        torch.testing.assert_close(given.mask_logit, out.mask_logit)


def test_detector_trains_on_four_bands():
    model = models.create_model("panelnet_res2netplus50", in_chans=4).train()
    out = model(torch.randn(2, 4, 64, 64))
    (out.tile_logit.sum() + out.mask_logit.mean()).backward()
    assert model.encoder.conv1[0].weight.grad is not None
    assert model.decoder.logit.weight.grad is not None


def test_the_feature_pyramid_is_torchvision_s_layer_for_layer():
    from collections import OrderedDict

    from torchvision.ops import FeaturePyramidNetwork

    from models.fpn import FeaturePyramid

    torch.manual_seed(0)
    ours, theirs = FeaturePyramid([24, 48, 96], 16), FeaturePyramidNetwork([24, 48, 96], 16)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    features = [torch.randn(2, c, s, s + 3) for c, s in ((24, 32), (48, 16), (96, 8))]
    with torch.no_grad():
        expected = list(theirs(OrderedDict((str(i), f) for i, f in enumerate(features))).values())
        for got, want in zip(ours(features), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_window_logits_judge_each_window_as_a_tile_of_that_size(detector):
    torch.manual_seed(1)
    features = [torch.randn(2, 2048, 6, 5)]  # only the deepest map is judged
    with torch.no_grad():
        windows = detector.window_logits(features, 3)
        assert windows.shape == (2, 4, 3)
        for r in range(4):
            for c in range(3):
                crop = [features[0][..., r:r + 3, c:c + 3]]
                torch.testing.assert_close(windows[:, r, c], detector.classify(crop))
