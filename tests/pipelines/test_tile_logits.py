"""The tile classifier on large tiles, judged densely: windows one cell apart, each judged as a tile of its own."""

from __future__ import annotations

import pytest
import torch

import models
from pipelines.predictors import presence_logits, tile_logits


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return models.create_model("panelnet_res2netplus50").eval()


def test_a_tile_no_larger_than_its_window_is_judged_whole(detector):
    features = [torch.randn(2, 2048, 8, 8)]
    with torch.no_grad():
        torch.testing.assert_close(tile_logits(detector, features, 256), detector.classify(features))


@pytest.mark.parametrize("cells", [9, 12])
def test_a_large_tile_takes_its_best_window_of_all_laid_one_cell_apart(detector, cells):
    torch.manual_seed(2)
    features = [torch.randn(3, 2048, cells, cells)]
    starts = range(cells - 8 + 1)
    with torch.no_grad():
        expected = torch.stack([
            detector.classify([features[0][..., r:r + 8, c:c + 8]]) for r in starts for c in starts
        ]).amax(0)
        torch.testing.assert_close(tile_logits(detector, features, 256), expected)


def test_each_cell_takes_the_best_window_that_holds_it(detector):
    torch.manual_seed(3)
    features = [torch.randn(1, 2048, 6, 6)]
    with torch.no_grad():
        presence = presence_logits(detector, features, 128)  # windows of 4 x 4 cells: 3 x 3 of them
        windows = torch.stack([torch.stack([detector.classify([features[0][..., r:r + 4, c:c + 4]])[0]
                                            for c in range(3)]) for r in range(3)])
    assert presence.shape == (1, 6, 6)
    torch.testing.assert_close(presence[0, 0, 0], windows[0, 0])  # a corner cell lies in one window only
    torch.testing.assert_close(presence[0, 2, 3], windows.max())  # the middle cells lie in every window
    torch.testing.assert_close(presence[0, 5, 1], windows[2, :2].max())


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
