"""Importers on miniature copies of the shared dataset layouts, and on the real folder when present."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from catalog_fixtures import write_raster

from data_catalog import Catalog
from data_catalog.errors import InputError, InputFileError
from data_catalog.importers import (
    BANGKOK,
    BERN,
    DUKE,
    NREL,
    import_bangkok,
    import_bern,
    import_duke,
    import_nrel,
    import_shared,
)
from data_catalog.labels import load_mask


def _rgb(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (3, size, size), dtype=np.uint8)


@pytest.fixture
def mini_shared(tmp_path: Path) -> Path:
    """Two or three files per dataset, laid out like shared/data."""
    root = tmp_path / "shared"
    duke = root / DUKE
    for i in (1, 2):
        write_raster(duke / "images" / f"000{i}.png", _rgb(i, 8))
    (duke / "labels.csv").write_text("file,source_id,has_pv\nimages/0001.png,1,0\nimages/0002.png,2,1\n")

    nrel = root / NREL
    write_raster(nrel / "segmentation/images/7_img.png", _rgb(3, 16))
    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 2:5] = 255
    write_raster(nrel / "segmentation/masks/7_img.png", mask)
    (nrel / "segmentation/index.csv").write_text(
        "image,mask,source_path,pv_pixels\nsegmentation/images/7_img.png,segmentation/masks/7_img.png,x,9\n"
    )
    write_raster(nrel / "negatives/images/no_panel_img_0.png", _rgb(4, 16))
    (nrel / "negatives/index.csv").write_text("image,has_pv\nnegatives/images/no_panel_img_0.png,0\n")
    write_raster(nrel / "mount_detection/images/11.png", _rgb(5, 16))
    (nrel / "mount_detection/boxes.csv").write_text(
        "image,class,xmin,ymin,xmax,ymax\nmount_detection/images/11.png,carport-fixed,1,2,3,4\n"
        "mount_detection/images/11.png,rooftop-fixed,5,6,7,8\n"
    )

    bern = root / BERN
    write_raster(
        bern / "images/ortho_2600012_1200012.tif", _rgb(6, 125), "EPSG:2056", (2599999.5, 1200024.5), 0.2
    )
    (bern / "labels.csv").write_text(
        "file,center_e_lv95,center_n_lv95,center_lon,center_lat,has_pv_registry,registry_plants,"
        "registry_total_power_kw,registry_first_operation\n"
        "images/ortho_2600012_1200012.tif,2600012,1200012,7.43,46.95,1,1,5.33,2017-04-28\n"
    )

    bangkok = root / BANGKOK
    write_raster(bangkok / "images/t.tif", _rgb(7, 32), "EPSG:32647", (671789.9, 1535540.8), 0.1)
    bangkok_mask = np.zeros((32, 32), np.uint8)
    bangkok_mask[:3, :5] = 255
    write_raster(bangkok / "masks/t_mask.tif", bangkok_mask, "EPSG:32647", (671789.9, 1535540.8), 0.1)
    (bangkok / "index.csv").write_text(
        "image,mask,polygons_wgs84\nimages/t.tif,masks/t_mask.tif,labels/t.geojson\n"
    )
    return root


def test_import_shared_builds_every_kind(mini_shared, catalog_dir):
    reports = import_shared(mini_shared, catalog_dir)
    assert {name: len(r.added) for name, r in reports.items()} == {
        "duke": 2,
        "nrel": 3,
        "bern": 1,
        "bangkok": 1,
    }
    assert not any(r.errors for r in reports.values())
    items = {item.id: item for item in Catalog.open(catalog_dir).items()}

    duke = items[f"{DUKE}-0002"]
    assert (duke.label_kind, duke.has_panels, duke.gsd_m, duke.crs) == ("presence", True, 0.3, None)

    seg, neg, mount = (items[f"{NREL}-{stem}"] for stem in ("7_img", "no_panel_img_0", "11"))
    assert (seg.label_kind, seg.gsd_m, load_mask(seg).sum()) == ("mask", 0.47, 9)
    assert (neg.label_kind, neg.has_panels) == ("presence", False)
    assert mount.has_panels and [b["class"] for b in mount.properties["mount_boxes"]] == [
        "carport-fixed",
        "rooftop-fixed",
    ]
    assert "internal evaluation only" in seg.licence

    bern = items[f"{BERN}-ortho_2600012_1200012"]
    assert (bern.label_kind, bern.has_panels, bern.crs, bern.gsd_m) == ("presence", True, "EPSG:2056", 0.2)
    assert bern.properties["registry_first_operation"] == "2017-04-28"
    assert bern.licence == "(c) swisstopo, SFOE register; attribution required"

    bangkok = items[f"{BANGKOK}-t"]
    assert (bangkok.label_kind, bangkok.crs, bangkok.gsd_m, load_mask(bangkok).sum()) == (
        "mask",
        "EPSG:32647",
        0.1,
        15,
    )

    again = import_shared(mini_shared, catalog_dir)
    assert all(not r.added and not r.errors for r in again.values())


def test_only_and_missing_datasets(mini_shared, catalog_dir, tmp_path):
    assert set(import_shared(mini_shared, catalog_dir, only=["duke"])) == {"duke"}
    with pytest.raises(InputError, match="unknown dataset"):
        import_shared(mini_shared, catalog_dir, only=["kaggle"])
    with pytest.raises(InputFileError, match="data folder not found"):
        import_shared(tmp_path / "absent", catalog_dir)


@pytest.mark.parametrize(
    ("importer", "folder", "index"),
    [
        (import_duke, DUKE, "labels.csv"),
        (import_nrel, NREL, "negatives/index.csv"),
        (import_bern, BERN, "labels.csv"),
        (import_bangkok, BANGKOK, "index.csv"),
    ],
)
def test_wrong_layout_names_the_missing_file(mini_shared, catalog_dir, importer, folder, index):
    (mini_shared / folder / index).unlink()
    with pytest.raises(InputFileError, match=str(mini_shared / folder / index)):
        importer(mini_shared / folder, Catalog.create(catalog_dir))


def test_bad_row_is_reported_by_name(mini_shared, catalog_dir):
    (mini_shared / DUKE / "labels.csv").write_text(
        "file,source_id,has_pv\nimages/0001.png,1,0\nimages/0002.png,2,x\n"
    )
    report = import_duke(mini_shared / DUKE, Catalog.create(catalog_dir))
    assert report.added == [f"{DUKE}-0001"] and report.errors == [
        ("0002.png", "has_pv must be 0 or 1, got 'x'")
    ]


def test_index_files_with_a_byte_order_mark_are_read(mini_shared, catalog_dir):
    labels = mini_shared / DUKE / "labels.csv"
    labels.write_text(labels.read_text(), encoding="utf-8-sig")
    report = import_duke(mini_shared / DUKE, Catalog.create(catalog_dir))
    assert report.errors == [] and len(report.added) == 2


def test_an_index_file_that_is_not_utf8_is_an_input_error_naming_it(mini_shared, catalog_dir):
    labels = mini_shared / DUKE / "labels.csv"
    labels.write_text("file,source_id,has_pv\nimages/0001.png,Fresno é,0\n", encoding="latin-1")
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(labels))}: not UTF-8 text \(.*\); save the CSV as UTF-8$"
    ):
        import_duke(mini_shared / DUKE, Catalog.create(catalog_dir))


SAMPLE_ROWS = 60


@pytest.fixture(scope="module")
def real_catalog(shared_data, tmp_path_factory) -> Catalog:
    """The real datasets imported with their importers; Duke and Bern from a sample of rows (fast tests)."""
    work = tmp_path_factory.mktemp("real")
    catalog = Catalog.create(work / "catalog")
    reports = []
    for folder, importer in ((NREL, import_nrel), (BANGKOK, import_bangkok)):
        if (shared_data / folder).is_dir():
            reports.append(importer(shared_data / folder, catalog))
    for folder, importer in ((DUKE, import_duke), (BERN, import_bern)):
        if (shared_data / folder).is_dir():
            sample = work / folder
            sample.mkdir()
            (sample / "images").symlink_to(shared_data / folder / "images")
            rows = (shared_data / folder / "labels.csv").read_text().splitlines()[: SAMPLE_ROWS + 1]
            (sample / "labels.csv").write_text("\n".join(rows) + "\n")
            reports.append(importer(sample, catalog))
    assert not [error for report in reports for error in report.errors]
    return Catalog.open(work / "catalog")


def test_real_datasets_import(real_catalog, shared_data):
    items = real_catalog.items()
    by_source = Counter(item.source for item in items)
    for folder, expected in ((DUKE, SAMPLE_ROWS), (NREL, 114), (BERN, SAMPLE_ROWS), (BANGKOK, 7)):
        if (shared_data / folder).is_dir():
            assert by_source[folder] == expected
    kinds = {(item.source, item.label_kind) for item in items}
    assert kinds <= {
        (DUKE, "presence"),
        (NREL, "mask"),
        (NREL, "presence"),
        (BERN, "presence"),
        (BANGKOK, "mask"),
    }
    assert real_catalog.validate() == []
    bern = [item for item in items if item.source == BERN]
    assert all(item.crs == "EPSG:2056" and "registry_first_operation" in item.properties for item in bern)
    assert all(
        item.gsd_m == 0.47 and "internal evaluation only" in item.licence
        for item in items
        if item.source == NREL
    )
    nrel_bands = {item.properties["subset"]: item.bands for item in items if item.source == NREL}
    rgb, palette = ("red", "green", "blue"), ("palette",)
    assert nrel_bands == {"segmentation": rgb, "negatives": palette, "mount_detection": palette}


def test_real_bangkok_masks_match_their_polygons(real_catalog, shared_data):
    import geopandas as gpd
    from rasterio.features import rasterize

    from data_catalog.rasters import open_raster

    bangkok = [item for item in real_catalog.items() if item.source == BANGKOK]
    if not bangkok:
        pytest.skip("Bangkok dataset absent")
    item = bangkok[0]
    with open_raster(item.image_path) as src:
        polygons = gpd.read_file(shared_data / BANGKOK / item.properties["polygons_wgs84"]).to_crs(src.crs)
        expected = rasterize(
            ((g, 1) for g in polygons.geometry), out_shape=src.shape, transform=src.transform
        )
    np.testing.assert_array_equal(load_mask(item), expected)
