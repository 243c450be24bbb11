"""Copy-paste augmentation: real panels land exactly where the updated mask says, only on panel-free crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_catalog import LabelledItem
from pipelines.prepared import PreparedItem
from pipelines.training.copy_paste import CopyPaste, cut_panels
from pipelines.training.data import TileSampleDataset

PANEL = np.array([0.1, 0.2, 0.9], np.float32)


def _panel_image() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((40, 40, 3), 0.5, np.float32)
    mask = np.zeros((40, 40), np.uint8)
    mask[2:6, 3:10] = 1  # a 4x7 panel
    mask[20:40, 0:40] = 1  # too large to paste into a 16 px crop
    mask[30, 30] = 0
    image[mask == 1] = PANEL
    return image, mask


def test_cut_panels_keeps_panels_that_fit():
    cutouts = cut_panels([_panel_image()], max_size=8, min_pixels=8)
    assert len(cutouts) == 1
    assert cutouts[0].mask.shape == (4, 7) and cutouts[0].mask.all()
    np.testing.assert_array_equal(cutouts[0].image, np.broadcast_to(PANEL, (4, 7, 3)))


def test_pasted_pixels_are_where_the_mask_says_and_inside_valid():
    paste = CopyPaste(cut_panels([_panel_image()], max_size=8, min_pixels=8), rate=1.0)
    background = np.full((16, 16, 3), 0.3, np.float32)
    valid = np.zeros((16, 16), np.uint8)
    valid[:, :12] = 1
    for seed in range(20):
        image, mask = paste(background, np.zeros((16, 16), np.uint8), valid, np.random.default_rng(seed))
        assert mask.any() and not mask[:, 12:].any()
        np.testing.assert_array_equal(image[mask == 1], np.broadcast_to(PANEL, (int(mask.sum()), 3)))
        np.testing.assert_array_equal(image[mask == 0], background[mask == 0])


def test_crops_with_panels_are_left_alone():
    paste = CopyPaste(cut_panels([_panel_image()], max_size=8, min_pixels=8), rate=1.0)
    image, mask = np.zeros((16, 16, 3), np.float32), np.zeros((16, 16), np.uint8)
    mask[0, :10] = 1
    out_image, out_mask = paste(image, mask, np.ones((16, 16), np.uint8), np.random.default_rng(0))
    assert out_image is image and out_mask is mask


def test_dataset_turns_a_negative_crop_into_a_labelled_positive():
    item = LabelledItem(id="neg", image_path=Path("neg.tif"), label_kind="presence", label_path=None,
                        has_panels=False, gsd_m=0.5, crs=None, source="test", licence="CC0", split="train",
                        group="g", shape=(16, 16), bands=("red", "green", "blue"), image_checksum="0")
    negative = PreparedItem(item, np.full((16, 16, 3), 0.3, np.float16), np.zeros((16, 16), np.uint8), False)
    paste = CopyPaste(cut_panels([_panel_image()], max_size=8, min_pixels=8), rate=1.0)
    dataset = TileSampleDataset([negative], 16, [0.0] * 3, [1.0] * 3, copy_paste=paste)
    sample = dataset.sample(0, np.random.default_rng(1))
    mask = sample["mask"][0].numpy() == 1
    assert sample["target"] == 1.0 and mask.sum() >= 28 and sample["weight"].all()
    np.testing.assert_allclose(sample["image"].numpy()[:, mask].T, np.broadcast_to(PANEL, (int(mask.sum()), 3)))
