"""Units of work: how scenes are split into strips, and that joined strips equal the whole-scene result."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from fixtures.scenes import DarkBluePredictor, write_scene

from pipelines.errors import ScoringConfigError
from pipelines.predictors import TileScores
from pipelines.scenes import open_scene
from pipelines.scoring.job import score, score_scene
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.units import join_units, plan_units, score_unit
from pipelines.tiling import batch_tiles

OPTIONS = ScoreOptions(min_area_m2=0.5, batch_size=8, progress=False)
STRIP_PIXELS = 8 * 300  # 8-row vectorising strips on 300-pixel-wide scenes


class BatchSensitivePredictor(DarkBluePredictor):
    """Like its parent, but each tile's scores shift with its batch-mates, as batched kernels may."""

    def predict(self, batch: np.ndarray) -> TileScores:
        scores = super().predict(batch)
        shift = np.float32(0.04 * (abs(batch.mean()) % 1.0))
        return TileScores(scores.tile_probability, scores.pixel_probability + shift, scores.segmented)


def _split_and_whole(tmp_path, predictor, gsd: float):
    # Panels cross strip seams every 8 rows and unit seams; one is a thin vertical bar across the whole scene.
    spec = write_scene(
        tmp_path / "scene.tif",
        width=300,
        height=170,
        panels=[(20, 10, 30, 280), (5, 285, 165, 292), (60, 40, 120, 90), (97, 200, 104, 240)],
        gsd=gsd,
    )
    scene = open_scene(spec.path, predictor.metadata.bands)
    units = plan_units(scene, predictor.metadata, OPTIONS, STRIP_PIXELS, max_tiles=2)
    split = join_units(
        [score_unit(u, predictor, OPTIONS, tmp_path) for u in reversed(units)], predictor, OPTIONS
    )
    [whole_unit] = plan_units(scene, predictor.metadata, OPTIONS, STRIP_PIXELS, max_tiles=None)
    whole = join_units([score_unit(whole_unit, predictor, OPTIONS, tmp_path)], predictor, OPTIONS)
    return units, split, whole


def test_units_partition_rows_and_tiles_and_cover_their_context(tmp_path):
    predictor = DarkBluePredictor()
    spec = write_scene(tmp_path / "a.tif", width=300, height=170, panels=[])
    scene = open_scene(spec.path, predictor.metadata.bands)
    units = plan_units(scene, predictor.metadata, OPTIONS, STRIP_PIXELS, max_tiles=2)
    assert len(units) > 3 and [u.index for u in units] == list(range(len(units)))
    assert units[0].rows[0] == 0 and units[-1].rows[1] == scene.height
    assert units[0].owned[0] == 0 and units[-1].owned[1] == units[0].scene_tiles
    for before, after in pairwise(units):
        assert before.rows[1] == after.rows[0] and after.rows[0] % 8 == 0
        assert before.owned[1] == after.owned[0]
    for unit in units:
        assert unit.tiles[0] <= unit.owned[0] <= unit.owned[1] <= unit.tiles[1]
        batch = batch_tiles(OPTIONS.batch_size, unit.tile_size, predictor.metadata.tile_size)
        assert batch > 1 and unit.tiles[0] % batch == 0
    [whole] = plan_units(scene, predictor.metadata, OPTIONS, STRIP_PIXELS, max_tiles=None)
    assert whole.rows == (0, scene.height) and whole.tiles == whole.owned == (0, whole.scene_tiles)


@pytest.mark.parametrize("gsd", [0.5, 0.3, 0.9])  # same, finer and coarser than the model's 0.5 m
@pytest.mark.parametrize("predictor_type", [DarkBluePredictor, BatchSensitivePredictor])
def test_strips_joined_equal_the_whole_scene(tmp_path, gsd, predictor_type):
    predictor = predictor_type(tile_size=16)  # small tiles: many of them, in several batches, on a small scene
    units, split, whole = _split_and_whole(tmp_path, predictor, gsd)
    assert len(units) > 3
    assert batch_tiles(OPTIONS.batch_size, units[0].tile_size, predictor.metadata.tile_size) > 1  # batch-mates matter
    assert len(whole.panels) == 4
    assert split.panels.geometry.to_wkb().tolist() == whole.panels.geometry.to_wkb().tolist()
    assert split.panels.drop(columns="geometry").equals(whole.panels.drop(columns="geometry"))
    assert (split.tile_probability, split.has_panels, split.tiles, split.tiles_segmented) == (
        whole.tile_probability,
        whole.has_panels,
        whole.tiles,
        whole.tiles_segmented,
    )


def test_score_scene_is_one_whole_unit(tmp_path):
    predictor = DarkBluePredictor()
    spec = write_scene(tmp_path / "a.tif", width=64, height=48, panels=[(10, 10, 20, 30)])
    result = score_scene(open_scene(spec.path, predictor.metadata.bands), predictor, OPTIONS, tmp_path)
    # Larger than the predictor's 32 px tiles, so it is cut into tiles that hold its shorter side: one 64 px tile.
    assert len(result.panels) == 1 and result.tiles == 1 and result.tiles_segmented == 1


def test_executor_options_are_checked(tmp_path):
    with pytest.raises(ScoringConfigError, match="executor must be one of local, ray"):
        ScoreOptions(executor="dask")
    with pytest.raises(ScoringConfigError, match="num_gpus_per_worker"):
        ScoreOptions(num_gpus_per_worker=-1)
    options = ScoreOptions.from_dict({"executor": "ray", "ray_address": "auto", "num_gpus_per_worker": 0.5})
    assert (options.executor, options.ray_address, options.num_gpus_per_worker) == ("ray", "auto", 0.5)
    write_scene(tmp_path / "a.tif", width=40, height=40, panels=[])
    summary = score([tmp_path], tmp_path / "out.geojson", OPTIONS, DarkBluePredictor())
    assert summary.exit_code == 0
