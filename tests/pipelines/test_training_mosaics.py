"""Mosaic training crops: panel-free cells are known empty masks, each panel cell a bag of its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_catalog import LabelledItem
from models import PanelOutput
from pipelines.prepared import PreparedItem
from pipelines.training.loop import BAG_TOP_PIXELS, TrainConfig, detection_loss, mixup
from pipelines.training.mosaics import MosaicSampleDataset

CELL = 20


def _prepared(has_panels: bool, k: int) -> PreparedItem:
    item = LabelledItem(id=f"t{k}", image_path=Path(f"t{k}.tif"), label_kind="presence", label_path=None,
                        has_panels=has_panels, gsd_m=0.5, crs=None, source="tiles", licence="CC0", split="train",
                        group=f"t{k}", shape=(CELL, CELL), bands=("red", "green", "blue"), image_checksum=f"t{k}")
    # panel tiles are bright, panel-free ones dark: a crop's pixels tell which cell they came from
    image = np.full((CELL, CELL, 3), 0.9 if has_panels else 0.1, np.float16)
    mask = None if has_panels else np.zeros((CELL, CELL), np.uint8)
    return PreparedItem(item, image, mask, has_panels)


def _dataset(rate: float = 0.5) -> MosaicSampleDataset:
    tiles = [_prepared(True, 0), _prepared(True, 1), _prepared(False, 2), _prepared(False, 3)]
    return MosaicSampleDataset(tiles, 32, [0.0] * 3, [1.0] * 3, panel_cell_rate=rate)


def test_mosaic_crops_label_panel_cells_as_bags_and_the_rest_as_empty_pixels():
    dataset = _dataset()
    seen_panels = seen_empty = 0
    for seed in range(40):
        sample = dataset.sample(np.random.default_rng(seed))
        image, bag, weight = sample["image"][0], sample["bag"][0], sample["weight"][0]
        assert sample["mask"].sum() == 0
        bright = image > 0.5
        torch.testing.assert_close(bag > 0, bright)  # panel bags exactly on the panel tiles' pixels
        torch.testing.assert_close(bag < 0, ~bright)  # every other pixel in a panel-free bag
        torch.testing.assert_close(weight > 0, ~bright)  # and a known empty one
        for bag_id in bag.unique()[bag.unique() > 0]:
            rows, cols = torch.nonzero(bag == bag_id, as_tuple=True)
            # the cell's middle lies a quarter cell or more inside the crop: its (middle) array is in view
            assert rows.max() - rows.min() + 1 >= 0.75 * CELL and cols.max() - cols.min() + 1 >= 0.75 * CELL
        assert float(sample["target"]) == float(bool(bright.any()))
        seen_panels += int(bright.any())
        seen_empty += int(not bright.any())
    assert seen_panels and seen_empty


def test_mosaic_crops_need_both_classes():
    with pytest.raises(ValueError, match="need tiles with and without panels, got 0 and 1"):
        MosaicSampleDataset([_prepared(False, 0)], 32, [0.0] * 3, [1.0] * 3)


def test_each_bag_of_a_crop_is_judged_on_its_own_top_pixels():
    bag = torch.zeros(1, 1, 16, 16)
    bag[0, 0, :8, :8] = 1
    bag[0, 0, 8:, 8:] = 2
    logits = torch.full((1, 1, 16, 16), -6.0)
    logits[0, 0, :4, :4] = 6.0  # bag 1 holds BAG_TOP_PIXELS confident pixels, bag 2 none
    assert BAG_TOP_PIXELS == 16
    batch = {"target": torch.ones(1), "mask": torch.zeros_like(logits), "weight": torch.zeros_like(logits),
             "bag": bag}
    _, parts = detection_loss(PanelOutput(torch.zeros(1), logits), batch, 1.0, 1.0)
    softplus = torch.nn.functional.softplus
    expected = (softplus(torch.tensor(-6.0)) + softplus(torch.tensor(6.0))) / 2  # the mean over the two bags
    assert parts["bag_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_a_panel_free_bag_is_judged_on_its_most_panel_like_pixels():
    bag = torch.full((1, 1, 16, 16), -1.0)
    bag[0, 0, 8:, 8:] = 1
    logits = torch.full((1, 1, 16, 16), -6.0)
    logits[0, 0, :4, :4] = 6.0  # 16 panel-like pixels in the panel-free part, none in the panel bag
    batch = {"target": torch.ones(1), "mask": torch.zeros_like(logits), "weight": torch.zeros_like(logits),
             "bag": bag}
    _, parts = detection_loss(PanelOutput(torch.zeros(1), logits), batch, 1.0, 1.0)
    assert parts["bag_loss"] == pytest.approx(2 * float(torch.nn.functional.softplus(torch.tensor(6.0))), rel=1e-5)
    logits[0, 0, :4, :4] = -6.0
    logits[0, 0, 8:12, 8:12] = 6.0  # both bags satisfied
    _, parts = detection_loss(PanelOutput(torch.zeros(1), logits), batch, 1.0, 1.0)
    assert parts["bag_loss"] == pytest.approx(2 * float(torch.nn.functional.softplus(torch.tensor(-6.0))), rel=1e-4)


def test_mixup_keeps_the_bags_of_the_dominant_sample():
    batch = {"image": torch.rand(4, 3, 8, 8), "target": torch.ones(4), "mask": torch.zeros(4, 1, 8, 8),
             "weight": torch.ones(4, 1, 8, 8), "bag": torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 8)}
    for seed in range(6):
        mixed = mixup(batch, torch.Generator().manual_seed(seed))
        assert set(mixed["bag"].unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}  # ids, never blends of two


def test_mosaic_rate_needs_bags(tmp_path):
    with pytest.raises(ValueError, match="mosaic_rate needs bag_loss_weight > 0"):
        TrainConfig(catalog=tmp_path, out=tmp_path, mosaic_rate=0.5)
    with pytest.raises(ValueError, match=r"mosaic_rate must be in \[0, 1\], got 2"):
        TrainConfig(catalog=tmp_path, out=tmp_path, mosaic_rate=2.0, bag_loss_weight=1.0)


def test_distillation_leaves_mosaic_crops_to_their_labels():
    logits = torch.zeros(2, 1, 8, 8)
    teacher = torch.full((2, 1, 8, 8), 4.0)
    teacher[1] = -4.0
    batch = {"target": torch.ones(2), "mask": torch.zeros_like(logits), "weight": torch.zeros_like(logits),
             "mosaic": torch.tensor([0.0, 1.0])}
    _, parts = detection_loss(PanelOutput(torch.zeros(2), logits), batch, 1.0, 0.0, teacher, 1.0)
    chip_only = torch.nn.functional.binary_cross_entropy_with_logits(logits[:1], torch.sigmoid(teacher[:1]))
    assert parts["distill_loss"] == pytest.approx(float(chip_only))
