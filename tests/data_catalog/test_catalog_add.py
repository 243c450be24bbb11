"""Creating, opening and adding to a catalog: kinds, idempotence, version, summary, atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from catalog_fixtures import ORIGINS, UTM

from data_catalog import AddReport, Catalog, CatalogError, LabelledItem
from data_catalog.errors import CatalogExistsError, CatalogNotFoundError, InputError


def test_create_then_open_and_refuse_second_create(catalog_dir):
    Catalog.create(catalog_dir)
    assert len(Catalog.open(catalog_dir)) == 0
    with pytest.raises(CatalogExistsError, match=str(catalog_dir)):
        Catalog.create(catalog_dir)


def test_open_missing_catalog_names_dir_and_fix(tmp_path):
    with pytest.raises(CatalogNotFoundError) as info:
        Catalog.open(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert "run `solarscan catalog init" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CatalogError)


def test_add_masks_records_item_fields(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    report = catalog.add(
        list(data.chips.values()), masks=list(data.masks.values()), source="test", licence="CC0"
    )
    assert report == AddReport(added=["test-chip_a", "test-chip_b", "test-chip_c"])
    item = Catalog.open(catalog_dir).items()[0]
    assert isinstance(item, LabelledItem)
    assert (
        item.image_path == data.chips["chip_a"].resolve()
        and item.label_path == data.masks["chip_a"].resolve()
    )
    assert (item.label_kind, item.has_panels, item.gsd_m, item.crs) == ("mask", True, 0.5, "EPSG:32633")
    assert (item.source, item.licence, item.shape, item.bands) == (
        "test",
        "CC0",
        (32, 32),
        ("red", "green", "blue"),
    )
    assert item.split in ("train", "val", "test") and item.group.startswith("utm33N:250m:")
    assert [i.has_panels for i in catalog.items()] == [True, True, False]


def test_add_polygons_writes_picked_polygons_inside_catalog(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    report = catalog.add([data.chips["chip_a"], data.chips["chip_c"]], polygons=data.polygons, source="test")
    assert report.added == ["test-chip_a", "test-chip_c"] and not report.errors
    with_panels, without = catalog.items()
    assert with_panels.label_kind == "polygons" and with_panels.has_panels and not without.has_panels
    assert with_panels.label_path.parent == catalog_dir.resolve() / "test-chip_a"
    stac = json.loads((catalog_dir / "test-chip_a" / "test-chip_a.json").read_text())
    assert stac["assets"]["labels"]["href"] == "./test-chip_a.geojson"
    assert stac["assets"]["image"]["href"] == str(data.chips["chip_a"].resolve())
    assert "https://stac-extensions.github.io/label/v1.0.1/schema.json" in stac["stac_extensions"]


def test_add_presence_csv(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    report = catalog.add(list(data.tiles.values()), labels_csv=data.presence_csv, gsd=0.3)
    assert len(report.added) == 4 and not report.errors
    items = {item.id: item for item in catalog.items()}
    assert items["user-tile_1"].has_panels is False and items["user-tile_0"].has_panels is True
    assert all(i.label_kind == "presence" and i.label_path is None and i.crs is None for i in items.values())
    assert items["user-tile_0"].group == items["user-dup_of_0"].group


def test_files_inside_catalog_are_referenced_relatively(data, catalog_dir, make_raster):
    catalog = Catalog.create(catalog_dir)
    inside = catalog_dir / "images" / "chip.tif"
    inside.parent.mkdir()
    inside.write_bytes(data.chips["chip_a"].read_bytes())
    catalog.add([inside], masks=[data.masks["chip_a"]])
    stac = json.loads(next(catalog_dir.glob("user-chip/user-chip.json")).read_text())
    assert stac["assets"]["image"]["href"] == "../images/chip.tif"
    assert Catalog.open(catalog_dir).items()[0].image_path == inside.resolve()


def test_adding_same_images_again_is_unchanged(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    catalog.add(list(data.chips.values()), masks=list(data.masks.values()))
    version = catalog.version
    again = Catalog.open(catalog_dir).add(list(data.chips.values()), masks=list(data.masks.values()))
    assert again.added == [] and len(again.unchanged) == 3 and not again.errors
    assert Catalog.open(catalog_dir).version == version


def test_same_image_with_another_label_is_rejected(data, catalog_dir, make_raster, tmp_path):
    catalog = Catalog.create(catalog_dir)
    catalog.add([data.chips["chip_a"]], masks=[data.masks["chip_a"]])
    empty = make_raster(
        tmp_path / "empty" / "chip_a_mask.tif", np.zeros((32, 32), np.uint8), UTM, ORIGINS["chip_a"]
    )
    report = catalog.add([data.chips["chip_a"]], masks=[empty])
    assert report.errors == [("chip_a.tif", "already catalogued as user-chip_a with a different label")]


def test_same_stem_different_image_gets_distinct_id(data, catalog_dir, tmp_path):
    catalog = Catalog.create(catalog_dir)
    other = tmp_path / "other" / "chip_a.tif"
    other.parent.mkdir()
    other.write_bytes(data.chips["chip_c"].read_bytes())
    catalog.add([data.chips["chip_a"]], masks=[data.masks["chip_a"]])
    report = catalog.add([other], masks=[data.masks["chip_c"]])
    assert len(report.added) == 1 and report.added[0].startswith("user-chip_a-")


def test_version_changes_only_with_content(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    empty = catalog.version
    catalog.add([data.chips["chip_a"]], masks=[data.masks["chip_a"]])
    one = catalog.version
    assert one != empty and Catalog.open(catalog_dir).version == one
    catalog.add([data.chips["chip_a"]], masks=[data.masks["chip_a"]])
    assert catalog.version == one
    catalog.add([data.chips["chip_b"]], masks=[data.masks["chip_b"]])
    assert catalog.version not in (empty, one)


def test_summary_and_split_filter(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    catalog.add(list(data.chips.values()), masks=list(data.masks.values()), source="geo")
    catalog.add(list(data.tiles.values()), labels_csv=data.presence_csv, gsd=0.3, source="plain")
    summary = catalog.summary()
    assert summary["items"] == 7
    assert summary["by_kind"] == {"mask": 3, "presence": 4}
    assert summary["by_source"] == {"geo": 3, "plain": 4}
    assert sum(summary["by_split"].values()) == 7
    for split, count in summary["by_split"].items():
        assert len(catalog.items(split)) == count
    with pytest.raises(InputError):
        catalog.items("training")


def test_add_needs_exactly_one_label_kind(data, catalog_dir):
    catalog = Catalog.create(catalog_dir)
    with pytest.raises(InputError):
        catalog.add([data.chips["chip_a"]])
    with pytest.raises(InputError):
        catalog.add([data.chips["chip_a"]], masks=[data.masks["chip_a"]], labels_csv=data.presence_csv)


def test_masks_pair_by_position_when_no_stem_matches(data, catalog_dir, tmp_path):
    renamed = tmp_path / "m.tif"
    renamed.write_bytes(data.masks["chip_a"].read_bytes())
    report = Catalog.create(catalog_dir).add([data.chips["chip_a"]], masks=[renamed])
    assert report.added == ["user-chip_a"]


def test_interrupted_add_keeps_previous_catalog(data, catalog_dir, monkeypatch):
    catalog = Catalog.create(catalog_dir)
    catalog.add([data.chips["chip_a"]], masks=[data.masks["chip_a"]])
    version = catalog.version
    real_replace = os.replace

    def fail_on_catalog(src, dst):
        if str(dst).endswith("catalog.json"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_catalog)
    with pytest.raises(KeyboardInterrupt):
        Catalog.open(catalog_dir).add([data.chips["chip_b"]], masks=[data.masks["chip_b"]])
    monkeypatch.undo()
    reopened = Catalog.open(catalog_dir)
    assert [item.id for item in reopened.items()] == ["user-chip_a"] and reopened.version == version
    assert reopened.validate() == []
    assert not list(catalog_dir.glob("**/.*.json.*")), "temporary files left behind"
    assert reopened.add([data.chips["chip_b"]], masks=[data.masks["chip_b"]]).added == ["user-chip_b"]
