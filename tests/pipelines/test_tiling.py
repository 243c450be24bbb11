"""Tile sizes and tile grids laid over a scene's model grid."""

from __future__ import annotations

import pytest
from affine import Affine

from pipelines.tiling import ModelGrid, scene_tile_size, scene_tiles


def _grid(width: int, height: int) -> ModelGrid:
    return ModelGrid(width, height, 1.0, 1.0, Affine.identity())


@pytest.mark.parametrize(
    ("width", "height", "bundle", "expected"),
    [
        (101, 101, 128, 128),  # a Duke chip: padded to the bundle's tile, as in training
        (83, 55, 128, 128),
        (1003, 1003, 128, 256),  # an NREL scene: at most twice the bundle's tile
        (10000, 10000, 128, 256),
        (1000, 150, 128, 160),  # the shorter side decides, padded by less than 32 px
        (1000, 128, 128, 128),
        (1000, 129, 128, 160),
        (20, 13, 32, 32),
    ],
)
def test_scenes_larger_than_the_bundle_tile_get_larger_tiles(width, height, bundle, expected):
    assert scene_tile_size(width, height, bundle) == expected


def test_scene_tiles_overlap_by_a_fraction_of_their_own_size():
    tiles = scene_tiles(_grid(1003, 600), 128, 0.25)
    assert {t.size for t in tiles} == {256}
    assert sorted({t.col for t in tiles}) == [0, 192, 384, 576, 768]  # stride 256 - 64; the last tile runs past the edge (padding)
    assert sorted({t.row for t in tiles}) == [0, 192, 384]
