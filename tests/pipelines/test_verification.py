"""Verifying candidate panels by the classifier on a window centred on each: which it judges, where, and what
scoring and scene evaluation keep."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from fixtures.scenes import MEAN, STD, write_scene
from fixtures.scenes import CentreJudgePredictor as CentreJudge
from rasterio.windows import Window

from pipelines.errors import ScoringConfigError
from pipelines.evaluation.scenes import SceneCase, panel_presence, verified_masks
from pipelines.scenes import open_scene
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.reading import SceneReader
from pipelines.scoring.verification import centred_tiles
from pipelines.tiling import ModelGrid, Tile, model_grid

GSD = 0.5
SOLID = (10, 10, 20, 22)  # 10 x 12 px: its centre is panel
# a 20 px square ring, 5 px thick: its centre is the ground inside it
RING = [(40, 60, 45, 80), (55, 60, 60, 80), (45, 60, 55, 65), (45, 75, 55, 80)]
# a 42 px square ring: wider than the stand-in's 32 px window, so no window centred on it holds it
WIDE_RING = [(20, 90, 25, 132), (57, 90, 62, 132), (25, 90, 57, 95), (25, 127, 57, 132)]


def _scene(tmp_path):
    return write_scene(tmp_path / "in" / "rings.tif", width=140, height=80, panels=[SOLID, *RING, *WIDE_RING],
                       gsd=GSD)


def _score(spec, out, predictor, **options):
    return score([spec.path], out, ScoreOptions(min_area_m2=0.5, progress=False, resume=False, **options), predictor)


def test_tiles_are_centred_on_their_points_in_model_pixels():
    grid = ModelGrid(width=200, height=100, scale_x=0.5, scale_y=0.5)  # two model pixels per source pixel
    assert centred_tiles(np.array([[50.0, 30.0], [3.0, 2.0]]), grid, 32) == [Tile(44, 84, 32), Tile(-12, -10, 32)]


def test_a_tile_before_the_grid_reads_as_padding_there(tmp_path):
    """A centred window at the scene's corner reaches past it: its pixels sit where they lie, the rest is
    padding, zero and not valid."""
    spec = write_scene(tmp_path / "s.tif", width=40, height=30, panels=[], gsd=GSD)
    scene = open_scene(spec.path, ["red", "green", "blue"])
    grid = model_grid(scene, GSD)
    assert Tile(-5, -3, 16).window(grid) == Window(0, 0, 13, 11)
    with SceneReader(scene, grid, MEAN, STD) as reader:
        corner, corner_valid = reader.read_tile(Tile(-5, -3, 16))
        inside, inside_valid = reader.read_tile(Tile(0, 0, 16))
    np.testing.assert_array_equal(corner[:, 5:, 3:], inside[:, :11, :13])
    assert corner_valid[5:, 3:].all() and not corner_valid[:5].any() and not corner_valid[:, :3].any()
    assert (corner[:, :5] == 0).all() and inside_valid.all()


def test_scoring_drops_the_panels_whose_centred_window_the_classifier_rejects(tmp_path):
    """The ring's centre is ground, so the window centred on it is judged empty and the ring dropped; the solid
    panel is kept with its presence; the wide ring is not judged (NaN) and kept. At --min-presence 0 nothing is
    judged."""
    spec = _scene(tmp_path)
    judge = CentreJudge()
    summary = _score(spec, tmp_path / "verified.geojson", judge)
    found = gpd.read_file(tmp_path / "verified.geojson").sort_values("area_m2")
    assert summary.panels == 2 and sum(judge.judged) == 2  # the solid panel and the ring; the wide one fits no window
    assert found["area_m2"].tolist() == pytest.approx([10 * 12 * GSD**2, (42**2 - 32**2) * GSD**2], rel=0.01)
    assert found["presence"].iloc[0] == 1.0 and np.isnan(found["presence"].iloc[1])
    unjudged = CentreJudge()
    assert _score(spec, tmp_path / "all.geojson", unjudged, min_presence=0.0).panels == 3 and not unjudged.judged
    everything = gpd.read_file(tmp_path / "all.geojson")
    assert everything["presence"].isna().all()
    assert _score(spec, tmp_path / "plain.geojson", CentreJudge(presence=None)).panels == 3  # a bundle without one
    with pytest.raises(ScoringConfigError, match=r"min_presence must be in \[0, 1\], got -0.1"):
        ScoreOptions(min_presence=-0.1)


def test_scene_evaluation_judges_the_components_as_scoring_judges_the_polygons(tmp_path):
    """``panel_presence`` on the scored mask gives each component the presence scoring gave its polygon, and
    ``verified_masks`` clears exactly the components scoring dropped."""
    spec = _scene(tmp_path)
    _score(spec, tmp_path / "all.geojson", CentreJudge(), min_presence=0.0, masks_dir=tmp_path / "masks")
    [mask_path] = (tmp_path / "masks").iterdir()
    with rasterio.open(mask_path) as src:
        mask = src.read(1)
    case = SceneCase(spec.path, "generated", GSD)
    [presence] = panel_presence([case], [mask], CentreJudge(), 0.5, 0.5)
    assert np.sort(presence).tolist()[:2] == [0.0, 1.0] and np.isnan(presence).sum() == 1
    [kept] = verified_masks([case], [mask], [presence], 0.5, 0.5, 0.5)
    ring = np.zeros(mask.shape, bool)
    for r0, c0, r1, c1 in RING:
        ring[r0:r1, c0:c1] = True
    assert (kept[ring] == 0).all() and (kept[~ring] == mask[~ring]).all() and mask[ring].min() > 0
    assert verified_masks([case], [mask], [presence], 0.5, 0.5, 0.0)[0] is mask
