"""Scene evaluation: seeded mosaics of labelled tiles, and scene metrics with known answers."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fixtures.scenes import PANEL_RGB, DarkBluePredictor, write_scene

from data_catalog import LabelledItem
from pipelines.evaluation.scenes import (
    MosaicCounter,
    SceneCase,
    SceneCounter,
    judge_cases,
    scene_cases,
    scene_objective,
    score_cases,
)
from pipelines.mosaics import MOSAIC_CRS, MOSAIC_ORIGIN, Mosaic, build_mosaics, mosaic_items

TILE = 32
GSD = 0.5


def _item(path: Path, kind: str, has_panels: bool, source: str = "tiles", label: Path | None = None,
          shape: tuple[int, int] = (TILE, TILE)) -> LabelledItem:
    return LabelledItem(id=path.stem, image_path=path, label_kind=kind, label_path=label, has_panels=has_panels,
                        gsd_m=GSD, crs="EPSG:32632", source=source, licence="CC0", split="test", group=path.stem,
                        shape=shape, bands=("red", "green", "blue"), image_checksum=path.stem)


def _tiles(root: Path, positives: int = 4, negatives: int = 6) -> list[LabelledItem]:
    """Presence tiles: the positives hold an 8 x 12 px dark-blue panel in their middle."""
    items = []
    for k in range(positives + negatives):
        panel = k < positives
        spec = write_scene(root / f"tile{k}.tif", width=TILE, height=TILE, gsd=GSD, seed=k,
                           panels=[(12, 10, 20, 22)] if panel else [])
        items.append(_item(spec.path, "presence", panel))
    return items


def _dark_blue(image: np.ndarray) -> np.ndarray:
    return np.all(image == np.array(PANEL_RGB, np.uint8)[:, None, None], axis=0)


def test_a_mosaic_places_every_panel_tile_once_and_knows_each_cell(tmp_path):
    items = _tiles(tmp_path / "tiles", positives=5)
    mosaics = build_mosaics(items, tmp_path / "mosaics", panel_share=0.25, seed=3, cells=4)
    assert len(mosaics) == 2  # 4 panel cells each: 5 panel tiles need two mosaics, the second topped up
    assert [int(m.cells.sum()) for m in mosaics] == [4, 4]
    for index, mosaic in enumerate(mosaics):
        with rasterio.open(mosaic.path) as src:
            image = src.read()
            assert src.crs.to_string() == MOSAIC_CRS and src.res == (GSD, GSD)
            assert (src.transform.c, src.transform.f) == (MOSAIC_ORIGIN[0] + 1000 * index, MOSAIC_ORIGIN[1])
        panel_px = _dark_blue(image).reshape(4, TILE, 4, TILE).sum(axis=(1, 3))
        np.testing.assert_array_equal(panel_px, np.where(mosaic.cells, 8 * 12, 0))  # turned, never cut
    assert mosaics[0].area_km2 == pytest.approx((4 * TILE * GSD) ** 2 / 1e6)
    again = build_mosaics(items, tmp_path / "again", panel_share=0.25, seed=3, cells=4)
    for first, second in zip(mosaics, again):  # seeded: the same mosaics every time
        np.testing.assert_array_equal(first.cells, second.cells)
        with rasterio.open(first.path) as a, rasterio.open(second.path) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def test_panel_free_mosaics_and_what_mosaics_refuse(tmp_path):
    items = _tiles(tmp_path / "tiles")
    free = build_mosaics(items, tmp_path / "free", panel_share=0.0, seed=0, panel_free_count=2, cells=3)
    assert len(free) == 2 and not any(m.cells.any() for m in free)
    with pytest.raises(ValueError, match="need panel-free tiles and panel tiles: got 0 with panels and 6"):
        build_mosaics(items[4:], tmp_path / "x", panel_share=0.1, seed=0)
    mixed = [items[0], dataclasses.replace(items[5], gsd_m=0.3)]
    with pytest.raises(ValueError, match="share one known ground sample distance"):
        build_mosaics(mixed, tmp_path / "x", panel_share=0.1, seed=0)
    with pytest.raises(ValueError, match=r"panel_share must be in \[0, 1\)"):
        build_mosaics(items, tmp_path / "x", panel_share=1.0, seed=0)
    odd = _item(tmp_path / "odd.tif", "presence", True, shape=(40, 20))
    drawn = _item(tmp_path / "m.tif", "mask", True)
    others = [_item(tmp_path / f"o{k}.tif", "presence", True, source="positives only") for k in range(20)]
    # one source and one square shape, presence labels of both classes only
    assert mosaic_items([*items, odd, drawn, *others]) == items
    assert mosaic_items(others) == []


def _mosaic(cells: np.ndarray, px: int = 10, gsd: float = 1.0) -> Mosaic:
    return Mosaic(Path("m.tif"), 0.1, cells, px, gsd)


def test_cells_are_found_by_panel_area_inside_them():
    cells = np.array([[True, False], [False, True]])
    probability = np.zeros((20, 20), np.uint8)
    probability[2:6, 2:6] = 255  # 16 px in panel cell (0, 0): found
    probability[12:14, 12:14] = 255  # 4 px in panel cell (1, 1): under the smallest panel
    probability[3:7, 13:17] = 200  # a false panel in panel-free cell (0, 1)
    probability[15:19, 3:7] = 100  # under the threshold
    counter = MosaicCounter()
    counter.update(_mosaic(cells), probability, threshold=0.5, min_pixels=9)
    scores = counter.scores()
    assert scores["cell_recall"] == 0.5 and scores["cell_precision"] == 0.5
    assert scores["false_panels_per_km2"] == pytest.approx(1 / (2 * 100 / 1e6))  # one in two cells of 100 m2
    confident = MosaicCounter()  # the false panel's mean probability is 200 / 255: under a cut of 0.8
    confident.update(_mosaic(cells), probability, threshold=0.5, min_pixels=9, min_confidence=0.8)
    assert confident.scores() == {"cell_recall": 0.5, "cell_precision": 1.0, "false_panels_per_km2": 0.0}


def test_scene_objects_are_found_by_touch_and_small_ones_do_not_count(tmp_path):
    truth = np.zeros((40, 40), np.uint8)
    truth[0:6, 0:6] = 255  # found
    truth[20:26, 20:26] = 255  # missed
    truth[35:38, 0:3] = 255  # 9 px: too small to count as a labelled panel
    image = write_scene(tmp_path / "s.tif", width=40, height=40, gsd=GSD, panels=[]).path
    mask = tmp_path / "mask.tif"
    with rasterio.open(mask, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8") as dst:
        dst.write(truth, 1)
    case = SceneCase(image, "drawn", GSD, item=_item(image, "mask", True, "drawn", mask, (40, 40)))
    probability = np.zeros((40, 40), np.uint8)
    probability[3:9, 3:9] = 255  # touches the first panel
    probability[30:35, 30:35] = 255  # on no panel
    counter = SceneCounter()
    counter.update(case, probability, threshold=0.5, min_pixels=4)
    scores = counter.scores()
    assert scores["object_recall"] == 0.5 and scores["object_precision"] == 0.5
    assert scores["pixel_iou"] == pytest.approx(9 / (36 + 36 + 9 + 36 + 25 - 9))
    free = SceneCase(image, "drawn", GSD, item=_item(image, "presence", False, "drawn", shape=(40, 40)))
    counter.update(free, probability, threshold=0.5, min_pixels=4)
    assert counter.scores()["false_panels_per_km2"] == pytest.approx(2 / (40 * 40 * 0.25 / 1e6))


def test_scene_evaluation_end_to_end_through_scoring(tmp_path):
    tiles = _tiles(tmp_path / "tiles", positives=3, negatives=5)
    truth = np.zeros((64, 64), np.uint8)
    truth[8:20, 8:30] = truth[40:52, 36:60] = 255
    scene = write_scene(tmp_path / "drawn.tif", width=64, height=64, gsd=GSD, seed=9,
                        panels=[(8, 8, 20, 30), (40, 36, 52, 60)])
    mask = tmp_path / "drawn_mask.tif"
    with rasterio.open(mask, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs=scene.crs,
                       transform=scene.transform) as dst:
        dst.write(truth, 1)
    empty = write_scene(tmp_path / "empty.tif", width=64, height=64, gsd=GSD, seed=10, panels=[])
    items = [*tiles, _item(scene.path, "mask", True, "drawn", mask, (64, 64)),
             _item(empty.path, "presence", False, "drawn", shape=(64, 64))]
    cases = scene_cases(items, tmp_path / "work", shares=(0.25,), seed=1)
    assert [c.group for c in cases].count("mosaic25") == 1 and [c.group for c in cases].count("mosaic00") == 2
    masks = score_cases(cases, DarkBluePredictor(gsd_m=GSD), tmp_path / "work")
    metrics = judge_cases(cases, masks, 0.5, 1.0)
    assert metrics == {
        "drawn/scene_object_recall": 1.0, "drawn/scene_object_precision": 1.0, "drawn/scene_pixel_iou": 1.0,
        "drawn/scene_false_panels_per_km2": 0.0, "tiles/mosaic00_false_panels_per_km2": 0.0,
        "tiles/mosaic25_cell_recall": 1.0, "tiles/mosaic25_cell_precision": 1.0,
        "tiles/mosaic25_false_panels_per_km2": 0.0,
    }
    assert scene_objective(metrics) == 1.0

    class Blind(DarkBluePredictor):
        def predict(self, batch):
            scores = super().predict(batch)
            return dataclasses.replace(scores, pixel_probability=np.zeros_like(scores.pixel_probability))

    blind = judge_cases(cases, score_cases(cases, Blind(gsd_m=GSD), tmp_path / "blind"), 0.5, 1.0)
    assert blind["tiles/mosaic25_cell_recall"] == 0.0 and blind["drawn/scene_object_recall"] == 0.0
    assert np.isnan(blind["tiles/mosaic25_cell_precision"]) and scene_objective(blind) == 0.0


def test_the_scene_objective_weighs_detection_f1_and_outline_iou_alike():
    metrics = {"tiles/mosaic02_cell_recall": 0.5, "tiles/mosaic02_cell_precision": 1.0,
               "tiles/mosaic00_false_panels_per_km2": 3.0, "drawn/scene_object_recall": 1.0,
               "drawn/scene_object_precision": 0.5, "drawn/scene_pixel_iou": 0.8}
    assert scene_objective(metrics) == pytest.approx((2 / 3 + 2 / 3 + 0.8) / 3)  # false panels/km2 is no term
    assert math.isnan(scene_objective({"tiles/mosaic00_false_panels_per_km2": 3.0}))


def test_component_centres_are_the_centres_of_mass():
    from scipy import ndimage

    from pipelines.evaluation.scenes import component_centres

    rng = np.random.default_rng(3)
    labels, count = ndimage.label(rng.random((60, 45)) > 0.7)
    expected = np.array(ndimage.center_of_mass(np.ones_like(labels), labels, range(1, count + 1)))
    np.testing.assert_allclose(component_centres(labels, count), expected, atol=1e-9)
