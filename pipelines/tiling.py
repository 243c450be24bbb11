"""Tiling: the model grid a scene is resampled to, and the overlapping tiles laid over it."""

from __future__ import annotations

from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window

from pipelines.scenes import Scene

DEFAULT_OVERLAP = 0.25  # tile overlap as a fraction of the tile size
SIZE_STEP = 32  # tile sizes are multiples of the model's output stride
LARGE_SCENE_FACTOR = 2  # scenes larger than the bundle's tile are scored in tiles up to this many times larger


@dataclass(frozen=True)
class ModelGrid:
    """A scene's pixel grid resampled to the model's ground sample distance."""

    width: int
    height: int
    scale_x: float  # source pixels per model pixel
    scale_y: float
    transform: Affine  # model pixel -> scene coordinates

    def source_window(self, window: Window) -> Window:
        """The (fractional) source-pixel window covering a model-grid window."""
        return Window(
            window.col_off * self.scale_x,
            window.row_off * self.scale_y,
            window.width * self.scale_x,
            window.height * self.scale_y,
        )


@dataclass(frozen=True)
class Tile:
    """A square window of the model grid; parts beyond the grid are padding, masked out."""

    row: int
    col: int
    size: int
    transform: Affine  # tile pixel -> scene coordinates

    def window(self, grid: ModelGrid) -> Window:
        """The part of the tile inside the grid."""
        return Window(
            self.col, self.row, min(self.size, grid.width - self.col), min(self.size, grid.height - self.row)
        )


def model_grid(scene: Scene, gsd_m: float) -> ModelGrid:
    """The grid of ``scene`` at ``gsd_m`` metres per pixel, covering exactly the same extent."""
    width = max(1, round(scene.width * scene.gsd_m[0] / gsd_m))
    height = max(1, round(scene.height * scene.gsd_m[1] / gsd_m))
    scale_x, scale_y = scene.width / width, scene.height / height
    return ModelGrid(width, height, scale_x, scale_y, scene.transform @ Affine.scale(scale_x, scale_y))


def scene_tile_size(width: int, height: int, bundle_tile_size: int) -> int:
    """The tile size for a scene of ``width`` x ``height`` model pixels: the bundle's own for scenes that fit in
    it (small chips are zero-padded to it, as in training), else the smallest multiple of 32 that holds the
    scene's shorter side, up to ``LARGE_SCENE_FACTOR`` times the bundle's.

    Fewer tile borders segment better: on the 13 NREL validation scenes (~1000 px at 0.3 m) the shipped model
    gave pixel IoU 0.841 in 256 px tiles against 0.787 in its 128 px tiles (same gate), while 384 and 512 px tiles
    dilute the tile classifier (0.79, 0.62).
    """
    short_side = -(-min(width, height) // SIZE_STEP) * SIZE_STEP
    return max(bundle_tile_size, min(short_side, LARGE_SCENE_FACTOR * bundle_tile_size))


def scene_tiles(grid: ModelGrid, bundle_tile_size: int, overlap: float) -> list[Tile]:
    """The scene's tiles, of ``scene_tile_size``, overlapping by the fraction ``overlap`` of their size."""
    size = scene_tile_size(grid.width, grid.height, bundle_tile_size)
    return tile_grid(grid, size, round(size * overlap))


def tile_grid(grid: ModelGrid, tile_size: int, overlap: int) -> list[Tile]:
    """Tiles of ``tile_size`` overlapping by ``overlap`` pixels, in row-major order, covering the whole grid."""
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, {tile_size}), got {overlap}")
    stride = tile_size - overlap
    return [
        Tile(row, col, tile_size, grid.transform @ Affine.translation(col, row))
        for row in tile_starts(grid.height, tile_size, stride)
        for col in tile_starts(grid.width, tile_size, stride)
    ]


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``size`` every ``stride`` pixels until they cover ``length``."""
    starts = [0]
    while starts[-1] + size < length:
        starts.append(starts[-1] + stride)
    return starts
