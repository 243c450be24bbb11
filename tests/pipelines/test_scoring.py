"""Batch scoring with a deterministic stand-in predictor: geometry, areas, seams, nodata, resume, failures."""

from __future__ import annotations

import json
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import rasterio
import rasterio.shutil
import shapely
from fixtures.scenes import DarkBluePredictor, write_scene
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin

from pipelines.errors import ScoringConfigError
from pipelines.scoring import job as scoring
from pipelines.scoring.export import atomic_path
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions

OPTIONS = ScoreOptions(min_area_m2=0.5, progress=False)


def _score(inputs, out, predictor=None, **options):
    options = ScoreOptions(**{**vars(OPTIONS), **options})
    return score(inputs, out, options, predictor or DarkBluePredictor())


def _expected_area(panel: shapely.Polygon, crs: str) -> float:
    series = gpd.GeoSeries([panel], crs=crs)
    return float(series.to_crs(series.estimate_utm_crs()).area.iloc[0])


def _match(found: gpd.GeoDataFrame, spec, tolerance_px: float = 1.0) -> None:
    """Every fixture panel is one polygon within ``tolerance_px`` pixels, with its ground area."""
    assert len(found) == len(spec.panels)
    local = found.to_crs(spec.crs)
    for panel in spec.panels:
        hits = local[local.intersects(panel)]
        assert len(hits) == 1, f"{panel} is split into {len(hits)} polygons"
        assert shapely.hausdorff_distance(hits.geometry.iloc[0], panel) <= tolerance_px * spec.gsd
        expected = _expected_area(panel, spec.crs)
        ground_px = expected / panel.area * spec.gsd**2  # one pixel's ground area
        perimeter_px = panel.length / spec.gsd
        assert abs(hits["area_m2"].iloc[0] - expected) <= perimeter_px * ground_px / 2


@pytest.mark.parametrize(
    ("crs", "origin", "gsd", "dtype", "layout"),
    [
        ("EPSG:32632", (500_000.0, 5_300_000.0), 0.5, "uint8", "rgb"),
        ("EPSG:2056", (2_600_000.0, 1_200_000.0), 0.5, "uint16", "rgb"),
        # Web Mercator at 46.9 deg N: 0.73 'metres' per pixel are 0.5 m on the ground.
        ("EPSG:3857", (828_000.0, 5_925_000.0), 0.5 / np.cos(np.radians(46.9)), "uint8", "rgbn"),
        ("EPSG:32632", (500_000.0, 5_300_000.0), 0.5, "float32", "rgba"),
        ("EPSG:32632", (500_000.0, 5_300_000.0), 0.5, "uint8", "palette"),
    ],
)
def test_panels_land_on_their_ground_coordinates(tmp_path, crs, origin, gsd, dtype, layout):
    spec = write_scene(
        tmp_path / "scene.tif",
        width=90,
        height=70,
        panels=[(5, 6, 17, 30), (40, 50, 52, 86)],
        crs=crs,
        origin=origin,
        gsd=gsd,
        dtype=dtype,
        layout=layout,
    )
    summary = _score([spec.path], tmp_path / "panels.geojson")
    assert summary.exit_code == 0 and summary.panels == 2
    found = gpd.read_file(tmp_path / "panels.geojson")
    _match(found, spec)
    assert list(found.columns) == [
        "panel_id", "source", "confidence", "presence", "area_m2", "capacity_kwp", "length_m", "width_m",
        "orientation_deg", "centroid_lon", "centroid_lat", "model", "geometry",
    ]
    # Both panels run east-west on the ground: 24 x 12 and 36 x 12 pixels of 0.5 m (north is up in every CRS here).
    found = found.sort_values("area_m2")
    np.testing.assert_allclose(found["length_m"], [12.0, 18.0], atol=0.5)
    np.testing.assert_allclose(found["width_m"], [6.0, 6.0], atol=0.5)
    np.testing.assert_allclose(found["orientation_deg"], [90.0, 90.0], atol=1.0)
    assert (found["confidence"] > 0.9).all() and (found["source"] == str(spec.path)).all()
    centroids = found.to_crs(found.estimate_utm_crs()).centroid.to_crs("EPSG:4326")
    np.testing.assert_allclose(found["centroid_lon"], centroids.x, atol=1e-6)
    np.testing.assert_allclose(found["centroid_lat"], centroids.y, atol=1e-6)


def test_finer_and_coarser_imagery_is_resampled_to_the_model_resolution(tmp_path):
    fine = write_scene(tmp_path / "fine.tif", width=160, height=120, panels=[(10, 12, 40, 70)], gsd=0.25)
    coarse = write_scene(
        tmp_path / "coarse.tif",
        width=60,
        height=40,
        panels=[(5, 5, 15, 25)],
        gsd=1.0,
        origin=(501_000.0, 5_300_000.0),
    )
    _score([fine.path, coarse.path], tmp_path / "panels.gpkg")
    found = gpd.read_file(tmp_path / "panels.gpkg")
    for spec in (fine, coarse):
        # Within one model pixel (0.5 m) of the truth.
        _match(found[found["source"] == str(spec.path)], spec, tolerance_px=0.5 / spec.gsd + 0.01)


def test_a_panel_across_tile_and_strip_seams_is_one_polygon(tmp_path, monkeypatch):
    monkeypatch.setattr(scoring, "STRIP_PIXELS", 200 * 16)  # 16-row vectorising strips
    # 64 px tiles (twice the predictor's 32 px) overlapping by 16: seams every 48 px; the long panel crosses 4
    # tiles, the tall one 3 strips.
    spec = write_scene(
        tmp_path / "wide.tif", width=200, height=70, panels=[(20, 10, 30, 180), (5, 185, 60, 195)]
    )
    _score([spec.path], tmp_path / "panels.parquet")
    found = gpd.read_parquet(tmp_path / "panels.parquet")
    _match(found, spec)
    assert found.geom_type.eq("Polygon").all()


@pytest.mark.parametrize("workers", [0, 3])
def test_reading_in_the_scoring_thread_or_ahead_in_threads_scores_the_same(tmp_path, workers):
    spec = write_scene(
        tmp_path / "wide.tif", width=200, height=70, panels=[(20, 10, 30, 180), (5, 185, 60, 195)]
    )
    _score([spec.path], tmp_path / "default.parquet")  # this predictor has no torch device: 0 readers
    _score([spec.path], tmp_path / "threads.parquet", workers=workers)
    default, threads = (gpd.read_parquet(tmp_path / f"{n}.parquet") for n in ("default", "threads"))
    assert len(default) == len(spec.panels)
    assert shapely.equals(shapely.union_all(default.geometry), shapely.union_all(threads.geometry))
    assert default["confidence"].tolist() == threads["confidence"].tolist()


def test_scene_smaller_than_a_tile(tmp_path):
    spec = write_scene(tmp_path / "small.tif", width=20, height=13, panels=[(3, 4, 9, 15)])
    _score([spec.path], tmp_path / "panels.geojson")
    _match(gpd.read_file(tmp_path / "panels.geojson"), spec)


@pytest.mark.parametrize("layout", ["rgb", "rgba", "palette"])
def test_nodata_never_gives_panels(tmp_path, layout):
    # The second panel lies under nodata (or transparent alpha or colour-map entry), the first half under it.
    spec = write_scene(
        tmp_path / "holes.tif",
        width=80,
        height=60,
        panels=[(10, 10, 20, 50), (40, 40, 50, 70)],
        nodata=0 if layout == "rgb" else None,
        nodata_box=(0, 30, 60, 80),
        layout=layout,
    )
    _score([spec.path], tmp_path / "panels.geojson", masks_dir=tmp_path / "masks")
    found = gpd.read_file(tmp_path / "panels.geojson").to_crs(spec.crs)
    assert len(found) == 1
    left_half = shapely.clip_by_rect(spec.panels[0], *spec.panels[0].bounds[:2], *(spec.transform @ (30, 10)))
    assert shapely.hausdorff_distance(found.geometry.iloc[0], left_half) <= spec.gsd
    with rasterio.open(tmp_path / "masks" / "holes.tif") as mask:
        assert mask.read(1)[:, 30:].max() == 0


def test_a_colour_mapped_png_is_expanded_and_its_transparent_entries_are_nodata(tmp_path):
    spec = write_scene(tmp_path / "tile.png", width=60, height=40, panels=[(5, 5, 15, 25), (20, 40, 30, 55)],
                       nodata_box=(0, 35, 40, 60), layout="palette", driver="PNG", crs=None)
    summary = _score([spec.path], tmp_path / "panels.geojson", masks_dir=tmp_path / "masks", gsd_m=0.5)
    assert summary.scored == 1 and not summary.failures
    with rasterio.open(tmp_path / "masks" / "tile.png") as mask:
        probability = mask.read(1)
    expected = np.zeros(probability.shape, bool)
    expected[5:15, 5:25] = True  # the second panel lies under transparent entries
    assert ((probability >= 128) == expected).mean() > 0.99
    assert probability[:, 35:].max() == 0  # nodata, not merely a low probability


def test_a_colour_mapped_raster_cannot_give_a_band_its_colour_map_lacks(tmp_path):
    from pipelines.errors import BandLayoutError
    from pipelines.scenes import open_scene

    spec = write_scene(tmp_path / "tile.tif", width=20, height=20, panels=[], layout="palette")
    palette = open_scene(spec.path, ["blue", "red"]).palette
    assert palette.shape == (256, 3) and tuple(palette[0]) == (130, 25, 255)  # the panel entry: blue, red, alpha
    with pytest.raises(BandLayoutError, match=r"tile.tif: .* colour-mapped .* has no 'nir'"):
        open_scene(spec.path, ["red", "green", "blue", "nir"])


def test_masks_and_tiles_csv(tmp_path):
    spec = write_scene(tmp_path / "a.tif", width=64, height=48, panels=[(10, 10, 20, 30)])
    empty = write_scene(tmp_path / "b.tif", width=40, height=40, panels=[], seed=1)
    _score(
        [tmp_path],
        tmp_path / "out" / "panels.geojson",
        masks_dir=tmp_path / "masks",
        tiles_csv=tmp_path / "tiles.csv",
    )
    with rasterio.open(spec.path) as src, rasterio.open(tmp_path / "masks" / "a.tif") as mask:
        assert (mask.count, mask.dtypes[0], mask.shape) == (1, "uint8", src.shape)
        assert mask.crs == src.crs and mask.transform == src.transform
        probability = mask.read(1)
    assert probability[12:18, 12:28].min() > 200 and probability[30:, :].max() < 20
    rows = (tmp_path / "tiles.csv").read_text().splitlines()
    assert rows[0] == "path,panel_probability,has_panels"
    assert rows[1:] == [f"{spec.path},0.950000,true", f"{empty.path},0.020000,false"]


def test_inputs_whose_masks_would_share_a_name_are_refused_before_scoring(tmp_path):
    a = write_scene(tmp_path / "a" / "x.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    b = write_scene(tmp_path / "b" / "x.tif", width=40, height=40, panels=[], seed=2)
    masks = tmp_path / "masks"
    with pytest.raises(ScoringConfigError, match=re.escape(
        f"{a.path} and {b.path} would both write their mask to {masks / 'x'}.*; rename one, or score them with "
        "separate --masks-dir"
    )):
        _score([tmp_path / "a", tmp_path / "b"], tmp_path / "panels.geojson", masks_dir=masks)
    assert not (tmp_path / "panels.geojson").exists() and list(masks.iterdir()) == []
    assert _score([tmp_path / "a", tmp_path / "b"], tmp_path / "panels.geojson").scored == 2  # fine without masks


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_a_batch_without_panels_writes_the_same_columns_and_types_as_one_with_them(tmp_path, suffix):
    write_scene(tmp_path / "roof" / "a.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    write_scene(tmp_path / "field" / "b.tif", width=40, height=40, panels=[], seed=1)
    def schema(path: Path) -> dict[str, str]:  # the file's own field types, not what pandas infers from no rows
        if suffix == ".parquet":
            return {f.name: str(f.type) for f in pq.read_schema(path)}
        info = pyogrio.read_info(path)
        return dict(zip(info["fields"], info["dtypes"], strict=True))

    some = _score([tmp_path / "roof"], tmp_path / f"some{suffix}").output
    none = _score([tmp_path / "field"], tmp_path / f"none{suffix}").output
    read = gpd.read_parquet if suffix == ".parquet" else gpd.read_file
    assert len(read(some)) == 1 and len(read(none)) == 0
    assert schema(none) == schema(some)


def test_geojson_is_rfc7946(tmp_path):
    spec = write_scene(
        tmp_path / "a.tif",
        width=64,
        height=48,
        panels=[(10, 10, 20, 30)],
        crs="EPSG:2056",
        origin=(2_600_000.0, 1_200_000.0),
    )
    _score([spec.path], tmp_path / "panels.geojson")
    doc = json.loads((tmp_path / "panels.geojson").read_text())
    assert "crs" not in doc
    ring = np.array(doc["features"][0]["geometry"]["coordinates"][0])
    assert 7.0 < ring[0, 0] < 8.0 and 46.0 < ring[0, 1] < 47.5  # lon, lat near Bern
    assert shapely.Polygon(ring).exterior.is_ccw
    assert np.allclose(ring, np.round(ring, 7), rtol=0, atol=1e-12)


def test_unreferenced_tiles_are_counted_but_not_mapped(tmp_path):
    png = write_scene(
        tmp_path / "plain.png", width=40, height=40, panels=[(5, 5, 15, 25)], crs=None, driver="PNG"
    )
    geo = write_scene(tmp_path / "geo.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    no_crs = write_scene(tmp_path / "nocrs.tif", width=40, height=40, panels=[], crs=None)

    summary = _score([png.path, geo.path, no_crs.path], tmp_path / "panels.geojson")
    assert summary.exit_code == 1 and list(summary.failures) == [str(png.path), str(no_crs.path)]
    assert all("--gsd" in reason for reason in summary.failures.values())

    summary = _score(
        [png.path, geo.path],
        tmp_path / "with_gsd.geojson",
        gsd_m=0.25,
        masks_dir=tmp_path / "masks",
        tiles_csv=tmp_path / "tiles.csv",
    )
    assert summary.exit_code == 0 and summary.panels == 2
    assert summary.unreferenced == {str(png.path): 1}
    # 200 pixels each; the PNG (0.25 m) is read at the model's 0.5 m, so its outline is good to one model pixel.
    assert summary.area_m2 == pytest.approx(200 * 0.25**2 + 200 * 0.5**2, abs=30 * 0.5 * 0.25)
    assert len(gpd.read_file(tmp_path / "with_gsd.geojson")) == 1
    assert (tmp_path / "masks" / "plain.png").is_file()
    assert "plain.png,0.950000,true" in (tmp_path / "tiles.csv").read_text()


def test_bad_inputs_are_reported_and_the_rest_is_scored(tmp_path):
    good = write_scene(tmp_path / "good.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    (tmp_path / "garbage.tif").write_bytes(b"not a tiff at all")
    truncated = tmp_path / "truncated.tif"
    write_scene(truncated, width=300, height=300, panels=[], seed=3)
    truncated.write_bytes(truncated.read_bytes()[:50_000])
    empty = write_scene(
        tmp_path / "empty.tif", width=40, height=40, panels=[], nodata=0, nodata_box=(0, 0, 40, 40)
    )
    grey = tmp_path / "grey.tif"
    with rasterio.open(
        grey,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="uint8",
        crs="EPSG:32632",
        transform=good.transform,
    ) as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))

    summary = _score([tmp_path, tmp_path / "missing.tif"], tmp_path / "out" / "panels.geojson")
    assert summary.exit_code == 1
    assert summary.scored == 1 and summary.panels == 1
    reasons = summary.failures
    assert set(reasons) == {
        str(tmp_path / n) for n in ("garbage.tif", "truncated.tif", "empty.tif", "grey.tif", "missing.tif")
    }
    for path, reason in reasons.items():
        assert reason.startswith(path)
    assert "no valid pixel" in reasons[str(empty.path)]
    assert "bands" in reasons[str(grey)]
    assert len(gpd.read_file(tmp_path / "out" / "panels.geojson")) == 1
    failed_lines = [line for line in summary.report().splitlines() if line.startswith("failed: ")]
    assert sorted(failed_lines) == sorted(f"failed: {reason}" for reason in reasons.values())


def _write_georeferenced(path: Path, **profile) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=3, dtype="uint8", **profile) as f:
            f.write(np.zeros((3, 20, 20), np.uint8))
    return path


def test_unusable_georeferences_fail_their_file_with_the_reason_and_the_rest_is_scored(tmp_path):
    good = write_scene(tmp_path / "good.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    local = _write_georeferenced(tmp_path / "local.tif", crs=CRS.from_wkt('LOCAL_CS["arbitrary",UNIT["metre",1]]'),
                                 transform=from_origin(0, 20, 1, 1))
    untransformed = _write_georeferenced(tmp_path / "untransformed.tif", crs="EPSG:32632")
    gcps = [GroundControlPoint(0, 0, 7.0, 46.0), GroundControlPoint(20, 0, 7.001, 46.0),
            GroundControlPoint(20, 20, 7.001, 45.999)]
    by_gcps = _write_georeferenced(tmp_path / "gcps.tif", gcps=gcps, crs="EPSG:4326")
    summary = _score([tmp_path], tmp_path / "out" / "panels.geojson")
    assert (summary.scored, summary.panels) == (1, 1) and str(good.path) not in summary.failures
    reason = summary.failures.pop(str(local))  # PROJ's own words in the brackets
    assert reason.startswith(f"{local}: its CRS 'arbitrary' cannot be related to longitude and latitude (")
    assert reason.endswith("); assign a real CRS (gdal_edit -a_srs EPSG:...) or remove it and pass --gsd")
    assert summary.failures == {
        str(untransformed): f"{untransformed}: has a CRS (EPSG:32632) but no geotransform, so its pixels have no "
                            "place on the map; fix the georeference (gdal_edit -a_ullr ...) or remove the CRS and "
                            "pass --gsd",
        str(by_gcps): f"{by_gcps}: georeferenced by ground control points only, which scoring cannot place polygons "
                      "by; warp it to a grid first (gdalwarp -order 1 IN OUT)",
    }


@pytest.mark.parametrize("where", ["out", "tiles_csv", "masks_dir"])
def test_an_output_folder_that_cannot_be_written_stops_the_batch_before_any_scene(tmp_path, where):
    write_scene(tmp_path / "in" / "a.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    outputs = {"out": tmp_path / "out" / "panels.geojson", "tiles_csv": None, "masks_dir": None}
    blocked = {"out": blocker / "panels.geojson", "tiles_csv": blocker / "tiles.csv", "masks_dir": blocker}
    outputs[where] = blocked[where]
    predictor = DarkBluePredictor()
    option = "--" + where.replace("_", "-")
    with pytest.raises(ScoringConfigError, match=f"^{re.escape(str(blocker))}: is a file, not a folder, so .*"
                                                 f"\\({option}\\) cannot be written in it"):
        _score([tmp_path / "in"], outputs["out"], predictor, tiles_csv=outputs["tiles_csv"],
               masks_dir=outputs["masks_dir"])
    assert predictor.batches == 0


def test_an_output_folder_without_write_permission_is_named_with_the_reason(tmp_path, monkeypatch):
    from pipelines import folders

    def refuse(dir):  # what the OS says of a folder the user may not write (tests may run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folders.tempfile, "TemporaryFile", refuse)
    with pytest.raises(ScoringConfigError, match=f"^{re.escape(str(tmp_path))}: cannot write the output "
                                                 r"\(--out\) there \(Permission denied\)"):
        _score([tmp_path], tmp_path / "panels.geojson")


def test_an_output_file_name_that_is_a_folder_stops_the_batch_before_any_scene(tmp_path):
    write_scene(tmp_path / "in" / "a.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    (tmp_path / "tiles.csv").mkdir()
    with pytest.raises(ScoringConfigError, match=re.escape(
        f"{tmp_path / 'tiles.csv'}: is a folder; --tiles-csv takes a file name, such as "
        f"{tmp_path / 'tiles.csv' / 'tiles.csv'}"
    )):
        _score([tmp_path / "in"], tmp_path / "panels.geojson", tiles_csv=tmp_path / "tiles.csv")
    (tmp_path / "p.geojson").mkdir()
    with pytest.raises(ScoringConfigError, match="p.geojson: is a folder; --out takes a file name"):
        _score([tmp_path / "in"], tmp_path / "p.geojson")
    assert not list(tmp_path.glob("*.parts"))  # nothing scored


def test_output_folders_are_created(tmp_path):
    write_scene(tmp_path / "in" / "a.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    out = tmp_path / "new" / "deeper" / "panels.geojson"
    summary = _score([tmp_path / "in"], out, tiles_csv=tmp_path / "csv" / "tiles.csv", masks_dir=tmp_path / "m")
    assert summary.exit_code == 0 and out.is_file() and (tmp_path / "csv" / "tiles.csv").is_file()
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["a.tif"]


def test_the_same_output_written_from_several_threads_at_once_lands_whole(tmp_path):
    out = tmp_path / "picture.png"
    start = threading.Barrier(4)

    def write(n: int) -> None:
        with atomic_path(out) as partial:
            start.wait()  # every thread holds its temporary file before any replaces the output
            partial.write_bytes(bytes([n]) * 100_000)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))  # re-raises any thread's error
    content = out.read_bytes()
    assert len(content) == 100_000 and len(set(content)) == 1  # one writer's file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]  # no temporary file left


def test_12_bit_data_that_declares_its_bit_depth_scores_as_its_8_bit_original(tmp_path):
    panels = [(5, 5, 15, 25)]
    write_scene(tmp_path / "8" / "a.tif", width=40, height=40, panels=panels)
    write_scene(tmp_path / "12" / "a.tif", width=40, height=40, panels=panels, dtype="uint16", bits=12,
                declare_bits=True)
    eight, twelve = (_score([tmp_path / d], tmp_path / f"{d}.geojson") for d in ("8", "12"))
    assert eight.panels == twelve.panels == 1
    a, b = (gpd.read_file(tmp_path / f"{d}.geojson") for d in ("8", "12"))
    assert a.geometry.iloc[0].equals_exact(b.geometry.iloc[0], 1e-9)


def test_16_bit_data_using_a_sixteenth_of_its_range_without_saying_so_is_warned_about(tmp_path, caplog):
    panels = [(5, 5, 15, 25)]
    dim = write_scene(tmp_path / "dim" / "a.tif", width=40, height=40, panels=panels, dtype="uint16", bits=12)
    declared = tmp_path / "declared" / "a.tif"
    write_scene(declared, width=40, height=40, panels=panels, dtype="uint16", bits=12, declare_bits=True)
    full = tmp_path / "full" / "a.tif"
    write_scene(full, width=40, height=40, panels=panels, dtype="uint16")
    with caplog.at_level("WARNING", logger="pipelines.scoring.units"):
        _score([dim.path], tmp_path / "dim.geojson")
    [warning] = [r.getMessage() for r in caplog.records]
    brightest = int(rasterio.open(dim.path).read().max())
    assert warning.startswith(f"{dim.path}: its uint16 pixels reach only {brightest} of 65535")
    assert "--bit-depth 12" in warning
    assert "gdal_translate -co NBITS=12" in warning and "-scale 0 4095 0 255" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipelines.scoring.units"):
        _score([declared, full], tmp_path / "fine.geojson")
        _score([dim.path], tmp_path / "given.geojson", bit_depth=12)
    assert not caplog.records


def test_a_bit_depth_given_scores_undeclared_12_bit_data_as_its_8_bit_original(tmp_path):
    panels = [(5, 5, 15, 25)]
    write_scene(tmp_path / "8" / "a.tif", width=40, height=40, panels=panels)
    write_scene(tmp_path / "12" / "a.tif", width=40, height=40, panels=panels, dtype="uint16", bits=12)
    eight = _score([tmp_path / "8"], tmp_path / "8.geojson")
    assert _score([tmp_path / "12"], tmp_path / "12.geojson").panels == 0  # scaled by 65535: almost black
    given = _score([tmp_path / "12"], tmp_path / "12-given.geojson", bit_depth=12)
    assert eight.panels == given.panels == 1
    a, b = (gpd.read_file(tmp_path / f"{d}.geojson") for d in ("8", "12-given"))
    assert a.geometry.iloc[0].equals_exact(b.geometry.iloc[0], 1e-9)


def test_a_bit_depth_beyond_what_a_file_holds_fails_that_file_only(tmp_path):
    write_scene(tmp_path / "in" / "eight.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    write_scene(tmp_path / "in" / "twelve.tif", width=40, height=40, panels=[(5, 5, 15, 25)], dtype="uint16",
                bits=12)
    summary = _score([tmp_path / "in"], tmp_path / "panels.geojson", bit_depth=12)
    expected = (f"{tmp_path / 'in' / 'eight.tif'}: --bit-depth 12 is more than its uint8 pixels hold (8 bits); "
                "score it without --bit-depth")
    assert summary.scored == 1 and list(summary.failures.values()) == [expected]
    with pytest.raises(ScoringConfigError, match="bit_depth must be in 1-16, got 17"):
        ScoreOptions(bit_depth=17)


def test_resume_skips_finished_scenes(tmp_path):
    a = write_scene(tmp_path / "a.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    b = write_scene(tmp_path / "b.tif", width=40, height=40, panels=[(20, 5, 30, 25)], seed=2)
    out = tmp_path / "panels.geojson"
    first = _score([tmp_path], out)
    assert (first.scored, first.resumed) == (2, 0)

    predictor = DarkBluePredictor()
    again = _score([tmp_path], out, predictor=predictor)
    assert (again.scored, again.resumed, again.panels) == (0, 2, 2) and predictor.batches == 0
    assert len(gpd.read_file(out)) == 2

    write_scene(b.path, width=40, height=40, panels=[], seed=4)  # b changes: only b is scored again
    changed = _score([tmp_path], out)
    assert (changed.scored, changed.resumed, changed.panels) == (1, 1, 1)

    forced = _score([a.path], out, resume=False)
    assert (forced.scored, forced.resumed) == (1, 0)
    assert _score([tmp_path], out, threshold=0.9).scored == 2  # other options: results differ, nothing reused
    assert _score([tmp_path], out, threshold=0.9, precision="fp32").scored == 2  # so does another precision


def test_a_vrt_is_scored_again_when_one_of_its_source_tiles_changes(tmp_path):
    tile = write_scene(tmp_path / "tiles" / "t.tif", width=40, height=40, panels=[(5, 5, 15, 25)])
    vrt = tmp_path / "mosaic.vrt"
    rasterio.shutil.copy(tile.path, vrt, driver="VRT")  # a VRT over the tile, as gdal_translate -of VRT writes
    out = tmp_path / "panels.geojson"
    assert _score([vrt], out).panels == 1
    assert _score([vrt], out).resumed == 1  # nothing changed
    write_scene(tile.path, width=40, height=40, panels=[], seed=3)  # the source tile edited, the VRT not
    again = _score([vrt], out)
    assert (again.scored, again.resumed, again.panels) == (1, 0, 0)


def test_the_manifest_gains_a_line_per_scene_and_a_line_cut_short_rescores_only_its_scene(tmp_path, caplog):
    for name, seed in [("a", 1), ("b", 2), ("c", 3)]:
        write_scene(tmp_path / "in" / f"{name}.tif", width=40, height=40, panels=[(5, 5, 15, 25)], seed=seed)
    out = tmp_path / "panels.geojson"
    manifest = tmp_path / "panels.geojson.manifest.jsonl"
    assert _score([tmp_path / "in"], out).scored == 3
    header, *records = manifest.read_text().splitlines()
    assert json.loads(header)["format_version"] == 2
    assert sorted(Path(json.loads(r)["source"]).name for r in records) == ["a.tif", "b.tif", "c.tif"]

    manifest.write_text("\n".join([header, *records[:2], records[2][:40]]) + "\n")  # as a crash mid-line leaves it
    again = _score([tmp_path / "in"], out)
    assert (again.scored, again.resumed) == (1, 2)
    assert len(manifest.read_text().splitlines()) == 5  # the rescored scene appended; nothing rewritten

    with caplog.at_level("WARNING", logger="pipelines.scoring.manifest"):
        assert _score([tmp_path / "in"], out, min_area_m2=2.0).scored == 3
    assert "made with another model or other result options; every scene is scored again" in caplog.text
    assert len(manifest.read_text().splitlines()) == 4  # a new manifest for the new options


def test_options_reject_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ScoringConfigError, match="unknown scoring options"):
        ScoreOptions.from_dict({"batchsize": 4})
    assert ScoreOptions.from_dict({"masks_dir": "m", "batch_size": 4}).masks_dir == Path("m")
    with pytest.raises(ScoringConfigError, match="overlap"):
        ScoreOptions(overlap=1.5)
    with pytest.raises(ScoringConfigError, match="unsupported output format"):
        _score([tmp_path], tmp_path / "panels.shp")
    with pytest.raises(ScoringConfigError, match="no input rasters"):
        _score([tmp_path], tmp_path / "panels.geojson")


def test_scoring_bounds_the_gdal_block_cache_unless_the_user_sets_it(monkeypatch):
    from pipelines.scoring.reading import GDAL_CACHE_BYTES, gdal_cache_env

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    with gdal_cache_env():
        assert rasterio.env.getenv()["GDAL_CACHEMAX"] == GDAL_CACHE_BYTES == 256 * 2**20  # bytes, not 256 B
    monkeypatch.setenv("GDAL_CACHEMAX", "64")
    with gdal_cache_env():
        assert "GDAL_CACHEMAX" not in rasterio.env.getenv()


def test_polygons_under_the_least_confidence_are_dropped(tmp_path):
    """The dark-blue stand-in says 0.95 on panels: a cut above that drops them, one below keeps them, and a
    bundle's own cut (chosen on scenes) applies where none is given."""
    spec = write_scene(tmp_path / "in" / "s.tif", width=64, height=64, panels=[(8, 8, 20, 30)])
    kept = _score([spec.path], tmp_path / "kept.geojson", min_confidence=0.9, resume=False)
    dropped = _score([spec.path], tmp_path / "dropped.geojson", min_confidence=0.96, resume=False)
    assert (kept.panels, dropped.panels) == (1, 0)
    cautious = DarkBluePredictor()
    cautious.metadata.thresholds = {**cautious.metadata.thresholds, "confidence": 0.97}
    assert _score([spec.path], tmp_path / "bundle.geojson", cautious, resume=False).panels == 0
    with pytest.raises(ScoringConfigError, match=r"min_confidence must be in \[0, 1\], got 1.5"):
        ScoreOptions(min_confidence=1.5)
