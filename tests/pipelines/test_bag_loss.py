"""Positive presence labels as multiple-instance bags: the crop's pixels, and the loss on its top pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_catalog.items import LabelledItem
from models.panelnet import PanelOutput
from pipelines.prepared import PreparedItem
from pipelines.training.data import TileSampleDataset
from pipelines.training.loop import BAG_TOP_PIXELS, TrainConfig, detection_loss


def _prepared(name: str, has_panels: bool, size: int = 20) -> PreparedItem:
    item = LabelledItem(id=name, image_path=Path(f"{name}.png"), label_kind="presence", label_path=None,
                        has_panels=has_panels, gsd_m=0.3, crs=None, source="test", licence="CC0", split="train",
                        group=name, shape=(size, size), bands=("red", "green", "blue"), image_checksum="0")
    mask = None if has_panels else np.zeros((size, size), np.uint8)
    return PreparedItem(item, np.full((size, size, 3), 0.4, np.float16), mask, has_panels)


def test_a_positive_presence_crop_is_a_bag_over_its_valid_pixels_only_when_asked():
    items = [_prepared("yes", True), _prepared("no", False)]
    with_bags = TileSampleDataset(items, 32, [0.0] * 3, [1.0] * 3, bags=True)
    positive, negative = (with_bags.sample(i, np.random.default_rng(0)) for i in range(2))
    assert positive["bag"][0, :20, :20].all() and positive["bag"].sum() == 400  # the chip, not the padding
    assert not positive["weight"].any() and positive["target"] == 1.0
    assert negative["weight"].sum() == 400  # a known empty mask, and a panel-free bag over the chip
    assert (negative["bag"][0, :20, :20] == -1).all() and negative["bag"].sum() == -400
    without = TileSampleDataset(items, 32, [0.0] * 3, [1.0] * 3).sample(0, np.random.default_rng(0))
    assert not without["bag"].any()


def _bag_loss(logits: torch.Tensor, bag: torch.Tensor, weight: float = 1.0) -> tuple[float, float]:
    n = logits.shape[0]
    batch = {"target": torch.ones(n), "mask": torch.zeros_like(logits), "weight": torch.zeros_like(logits),
             "bag": bag}
    total, parts = detection_loss(PanelOutput(torch.zeros(n), logits), batch, 1.0, weight)
    return parts["bag_loss"], float(total)


def test_a_bag_is_satisfied_by_a_few_confident_pixels_inside_it_and_nothing_else():
    bag = torch.zeros(2, 1, 32, 32)
    bag[0, :, :16, :16] = 1  # sample 0's bag is its top-left quarter; sample 1 is no bag
    low = torch.full((2, 1, 32, 32), -8.0)
    inside, outside, elsewhere, single = low.clone(), low.clone(), low.clone(), low.clone()
    inside[0, 0, :4, :4] = 8.0  # 16 = BAG_TOP_PIXELS confident pixels in the bag
    outside[0, 0, 20:24, 20:24] = 8.0
    elsewhere[1, 0, :4, :4] = 8.0
    single[0, 0, 0, 0] = 8.0
    assert BAG_TOP_PIXELS == 16
    assert _bag_loss(inside, bag)[0] == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-8.0))))
    for logits in (outside, elsewhere):
        assert _bag_loss(logits, bag)[0] == pytest.approx(8.0, abs=1e-3)
    assert _bag_loss(single, bag)[0] == pytest.approx(7.0, abs=1e-3)  # one pixel: the mean of the top 16 is -7
    tiny = torch.zeros(1, 1, 32, 32)
    tiny[0, 0, :2, :2] = 1  # a bag of 4 pixels: their mean, not 12 missing ones
    assert _bag_loss(torch.full((1, 1, 32, 32), 2.0), tiny)[0] == pytest.approx(float(
        torch.nn.functional.softplus(torch.tensor(-2.0))))
    bag_loss, total = _bag_loss(outside, bag, weight=0.0)
    assert bag_loss == 0.0 and total == pytest.approx(np.log(2.0))  # only the tile term is left


def test_bag_loss_weight_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="bag_loss_weight must be >= 0, got -1"):
        TrainConfig(catalog=tmp_path, out=tmp_path, bag_loss_weight=-1.0)
