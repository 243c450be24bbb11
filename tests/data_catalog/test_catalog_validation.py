"""Every bad item is rejected by name with a specific reason while the good ones are added; validate()."""

from __future__ import annotations

import re

import numpy as np
import pytest
from catalog_fixtures import ORIGINS, UTM

from data_catalog import Catalog
from data_catalog.errors import InputError, InputFileError


@pytest.fixture
def catalog(catalog_dir) -> Catalog:
    return Catalog.create(catalog_dir)


def reasons(report) -> dict[str, str]:
    return dict(report.errors)


def test_unreadable_image_is_rejected_and_good_ones_added(data, catalog, tmp_path):
    broken = tmp_path / "geo" / "broken.tif"
    broken.write_bytes(b"not a tiff at all")
    labels = _csv(tmp_path, "tile_0.png,1", "broken.tif,0")
    report = catalog.add([data.tiles["tile_0"], broken], labels_csv=labels, gsd=0.3)
    assert report.added == ["user-tile_0"]
    assert "not readable by rasterio" in reasons(report)["broken.tif"]


def test_truncated_image_is_rejected(data, catalog, tmp_path):
    truncated = tmp_path / "geo" / "truncated.tif"
    truncated.write_bytes(data.chips["chip_a"].read_bytes()[:600])
    report = catalog.add([truncated], labels_csv=_csv(tmp_path, "truncated.tif,1"), gsd=0.5)
    assert "not readable" in reasons(report)["truncated.tif"]


def test_mask_shape_mismatch(data, catalog, make_raster, tmp_path):
    small = make_raster(
        tmp_path / "m" / "chip_a_mask.tif", np.zeros((16, 32), np.uint8), UTM, ORIGINS["chip_a"]
    )
    report = catalog.add([data.chips["chip_a"]], masks=[small])
    assert reasons(report) == {"chip_a.tif": "mask chip_a_mask.tif is 16x32, image is 32x32"}


@pytest.mark.parametrize("values", [[0, 2], [0, 1, 255], [7]])
def test_bad_mask_values(data, catalog, make_raster, tmp_path, values):
    mask = np.zeros((32, 32), np.uint8)
    mask[0, : len(values)] = values
    path = make_raster(tmp_path / "m" / "chip_a_mask.tif", mask, UTM, ORIGINS["chip_a"])
    report = catalog.add([data.chips["chip_a"]], masks=[path])
    assert "values must be {0,1} or {0,255}" in reasons(report)["chip_a.tif"]


def test_missing_mask_for_an_image(data, catalog):
    report = catalog.add([data.chips["chip_a"], data.chips["chip_b"]], masks=[data.masks["chip_a"]])
    assert report.added == ["user-chip_a"]
    assert reasons(report)["chip_b.tif"].startswith("no mask given for it")


def test_polygons_outside_every_footprint(data, catalog):
    report = catalog.add([data.chips["chip_b"], data.chips["chip_c"]], polygons=data.polygons)
    assert report.added == []
    assert set(reasons(report)) == {"chip_b.tif", "chip_c.tif"}
    assert "none of the 1 polygons overlaps this image" in reasons(report)["chip_c.tif"]


def test_polygons_on_image_without_crs(data, catalog):
    report = catalog.add([data.tiles["tile_0"], data.chips["chip_a"]], polygons=data.polygons, gsd=0.5)
    assert report.added == ["user-chip_a"]
    assert reasons(report)["tile_0.png"].startswith("image has no CRS")


@pytest.mark.parametrize("value", ["2", "yes", ""])
def test_bad_presence_value(data, catalog, tmp_path, value):
    report = catalog.add([data.tiles["tile_1"]], labels_csv=_csv(tmp_path, f"tile_1.png,{value}"), gsd=0.3)
    assert reasons(report) == {"tile_1.png": f"has_panels must be 0 or 1 in labels.csv, got {value!r}"}


def test_image_not_in_presence_csv(data, catalog, tmp_path):
    report = catalog.add([data.tiles["tile_1"]], labels_csv=_csv(tmp_path, "tile_2.png,1"), gsd=0.3)
    assert reasons(report) == {"tile_1.png": "not listed in labels.csv"}


def test_missing_gsd(data, catalog):
    report = catalog.add([data.tiles["tile_0"]], labels_csv=data.presence_csv)
    assert reasons(report) == {
        "tile_0.png": "ground sample distance unknown: pass gsd (metres), it has no CRS"
    }


def test_gsd_contradicting_the_crs(data, catalog):
    report = catalog.add([data.chips["chip_a"]], masks=[data.masks["chip_a"]], gsd=0.3)
    assert reasons(report) == {
        "chip_a.tif": "gsd 0.3 m given but the image pixel size is 0.5 m in EPSG:32633"
    }


def test_geographic_crs_needs_gsd(catalog, make_raster, tmp_path):
    path = make_raster(tmp_path / "wgs84.tif", np.ones((3, 8, 8), np.uint8), "EPSG:4326", (15.0, 45.0))
    report = catalog.add([path], labels_csv=_csv(tmp_path, "wgs84.tif,0"))
    assert "its CRS EPSG:4326 is not projected" in reasons(report)["wgs84.tif"]


def test_missing_input_files_raise(data, catalog, tmp_path):
    with pytest.raises(InputFileError, match="nope.geojson"):
        catalog.add([data.chips["chip_a"]], polygons=tmp_path / "nope.geojson")
    with pytest.raises(InputError, match="has_panels"):
        catalog.add([data.tiles["tile_0"]], labels_csv=_csv(tmp_path, "tile_0.png", header="file"))


def test_a_labels_csv_saved_by_excel_with_a_byte_order_mark_is_read(data, catalog, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("file,has_panels\r\ntile_1.png,1\r\n", encoding="utf-8-sig")
    report = catalog.add([data.tiles["tile_1"]], labels_csv=path, gsd=0.3)
    assert report.errors == [] and len(report.added) == 1


def test_a_labels_csv_that_is_not_utf8_is_an_input_error_naming_it(data, catalog, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_text("file,has_panels\ntuile_é.png,1\n", encoding="latin-1")
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(.*\); save the CSV as UTF-8$"
    ):
        catalog.add([data.tiles["tile_1"]], labels_csv=path, gsd=0.3)


def test_validate_reports_changed_and_missing_files(data, catalog):
    catalog.add(list(data.chips.values()), masks=list(data.masks.values()))
    assert catalog.validate() == []
    data.masks["chip_b"].write_bytes(data.masks["chip_c"].read_bytes())
    data.chips["chip_c"].unlink()
    problems = dict(Catalog.open(catalog.directory).validate())
    assert problems["user-chip_b"].startswith("label file changed since it was catalogued")
    assert problems["user-chip_c"].startswith("image file missing")
    assert "user-chip_a" not in problems


def _csv(tmp_path, *rows, header="file,has_panels"):
    path = tmp_path / "geo" / "labels.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path
