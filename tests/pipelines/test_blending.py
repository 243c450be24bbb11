"""Blending overlapping tiles strip by strip equals the weighted average over the whole grid."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.scoring.blending import SINK_ROWS, StripBlender, hann_weights
from pipelines.tiling import ModelGrid, tile_grid


@pytest.mark.parametrize("overlap", [24, 72])  # kept rows fewer than the stride, and three strides' worth
def test_strips_handed_over_in_small_chunks_equal_the_dense_weighted_average(overlap: int):
    height, width, size = 300, 170, 96
    tiles = tile_grid(ModelGrid(width, height, 1.0, 1.0), size, overlap)
    rng = np.random.default_rng(0)
    maps = [rng.random((size, size), dtype=np.float32) for _ in tiles]
    weights = hann_weights(size)
    weights[:10] = 0  # as where a tile is nodata: those pixels take the other tiles' predictions only
    total = np.zeros((height + size, width + size), np.float64)
    norm = np.zeros_like(total)
    for tile, p in zip(tiles, maps):
        total[tile.row:tile.row + size, tile.col:tile.col + size] += p * weights
        norm[tile.row:tile.row + size, tile.col:tile.col + size] += weights
    expected = np.divide(total, norm, out=np.zeros_like(total), where=norm > 0)[:height, :width]

    calls: list[tuple[int, np.ndarray]] = []
    blender = StripBlender(height, width, size, lambda row, p: calls.append((row, p.copy())))
    for tile, p in zip(tiles, maps):
        blender.add(tile, p, weights)
    blender.close()

    assert [row for row, _ in calls] == list(np.cumsum([0] + [len(p) for _, p in calls[:-1]]))  # in order, no gaps
    assert max(len(p) for _, p in calls) <= SINK_ROWS
    np.testing.assert_allclose(np.concatenate([p for _, p in calls]), expected, rtol=1e-5, atol=1e-6)
    assert not np.concatenate([p for _, p in calls])[:10].any()  # the first rows had no weight: probability 0


def test_rows_under_a_skipped_band_of_tiles_are_handed_over_as_zeros():
    height, width, size = 400, 100, 96
    tiles = tile_grid(ModelGrid(width, height, 1.0, 1.0), size, 24)  # rows 0, 72, ..., 288
    calls: list[tuple[int, np.ndarray]] = []
    blender = StripBlender(height, width, size, lambda row, p: calls.append((row, p.copy())))
    for tile in tiles:
        if tile.row not in (72, 144):  # two rows of tiles wholly nodata, as scoring skips them
            blender.add(tile, np.ones((size, size), np.float32), hann_weights(size))
    blender.close()
    rows = np.concatenate([p for _, p in calls])
    assert [row for row, _ in calls] == list(np.cumsum([0] + [len(p) for _, p in calls[:-1]]))  # no gaps
    assert rows.shape == (height, width) and max(len(p) for _, p in calls) <= SINK_ROWS
    np.testing.assert_allclose(rows[:96], 1.0, rtol=1e-6)
    assert not rows[96:216].any()  # seen by no tile that was added
    np.testing.assert_allclose(rows[216:], 1.0, rtol=1e-6)
