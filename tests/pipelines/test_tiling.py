"""Tile sizes and tile grids laid over a scene's model grid."""

from __future__ import annotations

import pytest

from pipelines.tiling import ModelGrid, batch_tiles, scene_tile_size, scene_tiles, scene_window, tile_window


def _grid(width: int, height: int) -> ModelGrid:
    return ModelGrid(width, height, 1.0, 1.0)


@pytest.mark.parametrize(
    ("width", "height", "bundle", "expected"),
    [
        (101, 101, 128, 128),  # a Duke chip: padded to the bundle's tile, as in training
        (83, 55, 128, 128),
        (1000, 150, 128, 160),  # the shorter side decides, padded by less than 32 px
        (1000, 128, 128, 128),
        (1000, 129, 128, 160),
        (20, 13, 32, 32),
        (1003, 1003, 128, 256),  # an NREL scene: windows of at most twice the bundle's tile
        (10000, 10000, 128, 256),
    ],
)
def test_the_classifier_window_grows_with_the_scene_up_to_twice_the_bundle_tile(width, height, bundle, expected):
    assert scene_window(width, height, bundle) == expected


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (101, 101, 128),  # a Duke chip: padded to the bundle's tile, as in training
        (1000, 150, 160),  # no larger than its window
        (256, 256, 256),
        # 256 px tiles every 192 px: 5 x 5 x 256^2 = 1.64 Mpx; 384 every 320: 3 x 3 x 384^2 = 1.33 Mpx;
        # 512 every 448: 3 x 3 x 512^2 = 2.36 Mpx
        (1003, 1003, 384),
        (300, 300, 384),  # one 384 px tile (0.15 Mpx) against four of 256 px or one of 512 px (0.26 Mpx)
        # 52^2 x 256^2 = 177.2 Mpx; 32^2 x 384^2 = 151.0 Mpx; 23^2 x 512^2 = 138.7 Mpx
        (10000, 10000, 512),
    ],
)
def test_large_scenes_get_the_tile_size_that_covers_them_with_the_fewest_pixels(width, height, expected):
    assert scene_tile_size(width, height, 128, 0.25) == expected


def test_tiles_of_large_scenes_hold_whole_windows_and_overlap_by_a_fraction_of_the_window():
    tiles = scene_tiles(_grid(10000, 10000), 128, 0.25)
    assert {t.size for t in tiles} == {512}
    assert tile_window(512, 128) == 256
    starts = sorted({t.col for t in tiles})
    assert starts[:3] == [0, 448, 896] and len(starts) == 23  # stride 512 - 256 / 4
    assert len(tiles) == 23 * 23


@pytest.mark.parametrize(("tile", "expected"), [(128, 8), (160, 8), (256, 8), (384, 3), (512, 2)])
def test_a_batch_holds_as_many_pixels_as_a_batch_of_windows(tile, expected):
    assert batch_tiles(8, tile, 128) == expected
    assert batch_tiles(1, tile, 128) == 1


def test_scene_tiles_overlap_by_a_fraction_of_their_own_size():
    tiles = scene_tiles(_grid(1003, 200), 128, 0.25)
    assert {t.size for t in tiles} == {224}
    assert sorted({t.col for t in tiles}) == [0, 168, 336, 504, 672, 840]  # stride 224 - 56; the last runs past the edge (padding)
    assert sorted({t.row for t in tiles}) == [0]
