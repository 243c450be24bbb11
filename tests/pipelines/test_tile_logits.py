"""The tile classifier on large tiles: the highest logit of its windows, each judged as a tile of its own."""

from __future__ import annotations

import pytest
import torch

import models
from pipelines.predictors import tile_logits


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return models.create_model("panelnet_res2netplus50").eval()


def test_a_tile_no_larger_than_its_window_is_judged_whole(detector):
    features = [torch.randn(2, 2048, 8, 8)]
    with torch.no_grad():
        torch.testing.assert_close(tile_logits(detector, features, 256), detector.classify(features))


@pytest.mark.parametrize(("cells", "starts"), [(16, [0, 4, 8]), (12, [0, 4]), (14, [0, 4, 6])])
def test_a_large_tile_takes_its_best_window_half_a_window_apart(detector, cells, starts):
    torch.manual_seed(2)
    features = [torch.randn(3, 2048, cells, cells)]
    with torch.no_grad():
        expected = torch.stack([
            detector.classify([features[0][..., r:r + 8, c:c + 8]]) for r in starts for c in starts
        ]).amax(0)
        torch.testing.assert_close(tile_logits(detector, features, 256), expected)


def test_a_panel_in_one_window_is_not_diluted_by_the_rest_of_the_tile(detector):
    """The window holding the strongest evidence decides, however much empty ground surrounds it."""
    linear = detector.classifier[-1]
    features = torch.zeros(1, 2048, 16, 16)
    features[..., 12:16, 12:16] = linear.weight.sign().view(1, -1, 1, 1)  # raises the logit of cells it fills
    with torch.no_grad():
        whole = detector.classify([features])
        windowed = tile_logits(detector, [features], 256)
        corner = detector.classify([features[..., 8:16, 8:16]])
    torch.testing.assert_close(windowed, corner)
    assert float(windowed) > float(whole)
