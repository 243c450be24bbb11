"""Split assignment: deterministic, about 70/15/15, and never splitting a group."""

from __future__ import annotations

from collections import Counter, defaultdict

from shapely.geometry import box

from data_catalog import Catalog
from data_catalog.splits import SPLITS, assign_split, content_group, spatial_group


def test_assign_split_is_deterministic_and_balanced():
    groups = [f"group-{i}" for i in range(20_000)]
    splits = [assign_split(g) for g in groups]
    assert splits == [assign_split(g) for g in groups]
    shares = {split: count / len(groups) for split, count in Counter(splits).items()}
    assert abs(shares["train"] - 0.70) < 0.02 and abs(shares["val"] - 0.15) < 0.02
    assert abs(shares["test"] - 0.15) < 0.02


def test_spatial_group_keeps_neighbours_and_ignores_the_crs():
    tile = box(500_000, 4_999_984, 500_016, 5_000_000)
    neighbour = box(500_016, 4_999_984, 500_032, 5_000_000)
    far = box(510_000, 4_999_984, 510_016, 5_000_000)
    assert spatial_group(tile, "EPSG:32633") == spatial_group(neighbour, "EPSG:32633")
    assert spatial_group(tile, "EPSG:32633") != spatial_group(far, "EPSG:32633")
    in_3857 = box(1_669_792.36, 5_591_000, 1_669_800, 5_591_010)  # same place in Web Mercator
    assert spatial_group(in_3857, "EPSG:3857").startswith("utm33N:250m:")


def test_content_group_is_the_pixel_digest():
    assert content_group("abc") == "pixels:abc"


def test_catalog_groups_never_straddle_splits(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    catalog.add(list(data.chips.values()), masks=list(data.masks.values()))
    catalog.add(list(data.tiles.values()), labels_csv=data.presence_csv, gsd=0.3)
    splits_of_group = defaultdict(set)
    for item in catalog.items():
        assert item.split in SPLITS and item.split == assign_split(item.group)
        splits_of_group[item.group].add(item.split)
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    items = {item.id: item for item in catalog.items()}
    assert items["user-chip_a"].group == items["user-chip_b"].group != items["user-chip_c"].group
    assert items["user-tile_0"].group == items["user-dup_of_0"].group != items["user-tile_1"].group
