"""load_mask: masks and rasterised polygons on the image grid, None for presence items."""

from __future__ import annotations

import numpy as np
from catalog_fixtures import PANEL_COLS, PANEL_PIXELS, PANEL_ROWS

from data_catalog import Catalog
from data_catalog.labels import load_mask


def test_mask_items_are_binarised(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    catalog.add(list(data.chips.values()), masks=list(data.masks.values()))
    masks = {item.id: load_mask(item) for item in catalog.items()}
    for mask in masks.values():
        assert mask.dtype == np.uint8 and mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 1}
    assert masks["user-chip_a"].sum() == PANEL_PIXELS and masks["user-chip_a"][PANEL_ROWS, PANEL_COLS].all()
    assert masks["user-chip_b"].sum() == 4 * 32 and masks["user-chip_c"].sum() == 0


def test_polygons_are_rasterised_on_the_image_grid(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    catalog.add([data.chips["chip_a"], data.chips["chip_b"]], polygons=data.polygons)
    masks = {item.id: load_mask(item) for item in catalog.items()}
    expected = np.zeros((32, 32), np.uint8)
    expected[PANEL_ROWS, PANEL_COLS] = 1
    np.testing.assert_array_equal(masks["user-chip_a"], expected)
    assert masks["user-chip_b"].dtype == np.uint8 and masks["user-chip_b"].sum() == 0


def test_presence_items_have_no_mask(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    catalog.add([data.tiles["tile_0"]], labels_csv=data.presence_csv, gsd=0.3)
    assert load_mask(catalog.items()[0]) is None
