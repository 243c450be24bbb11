"""Tiling: the model grid a scene is resampled to, and the overlapping tiles laid over it."""

from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window

from pipelines.scenes import Scene

DEFAULT_OVERLAP = 0.25  # tile overlap as a fraction of the classifier window (the tile, but in large scenes)
SIZE_STEP = 32  # tile sizes are multiples of the model's output stride
WINDOW_FACTOR = 2  # the tile classifier judges windows of up to this many times the bundle's tile
WINDOWS_PER_TILE = 2  # large scenes are scored in tiles of up to this many classifier windows across
PRESENCE_WINDOW_TILES = 1  # presence is judged densely in windows of this many bundle tiles across


@dataclass(frozen=True)
class ModelGrid:
    """A scene's pixel grid resampled to the model's ground sample distance."""

    width: int
    height: int
    scale_x: float  # source pixels per model pixel
    scale_y: float

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
    """A square window of the model grid, which may start before it (at negative offsets) or reach past it; parts
    beyond the grid are padding, masked out."""

    row: int
    col: int
    size: int

    def window(self, grid: ModelGrid) -> Window:
        """The part of the tile inside the grid."""
        row, col = max(0, self.row), max(0, self.col)
        return Window(col, row, min(self.col + self.size, grid.width) - col, min(self.row + self.size, grid.height) - row)


def model_grid(scene: Scene, gsd_m: float) -> ModelGrid:
    """The grid of ``scene`` at ``gsd_m`` metres per pixel, covering exactly the same extent."""
    width = max(1, round(scene.width * scene.gsd_m[0] / gsd_m))
    height = max(1, round(scene.height * scene.gsd_m[1] / gsd_m))
    scale_x, scale_y = scene.width / width, scene.height / height
    return ModelGrid(width, height, scale_x, scale_y)


def scene_window(width: int, height: int, bundle_tile_size: int) -> int:
    """The classifier window for a scene of ``width`` x ``height`` model pixels: the bundle's tile for scenes that
    fit in it (small chips are zero-padded to it, as in training), else the smallest multiple of 32 that holds the
    scene's shorter side, up to ``WINDOW_FACTOR`` times the bundle's tile.

    Judged whole, a larger window dilutes a small panel in the classifier's average: on the 13 NREL validation
    scenes (~1000 px at 0.3 m) tiles judged whole gave pixel IoU 0.841 at 256 px, 0.79 at 384 px and 0.62 at
    512 px; the bundle's own 128 px tiles gave 0.787 (more tile borders).
    """
    short_side = -(-min(width, height) // SIZE_STEP) * SIZE_STEP
    return max(bundle_tile_size, min(short_side, WINDOW_FACTOR * bundle_tile_size))


def scene_tile_size(width: int, height: int, bundle_tile_size: int, overlap: float) -> int:
    """The tile size for a scene: its classifier window, or for scenes larger than the window the size from one
    window to ``WINDOWS_PER_TILE`` windows, in steps of half a window (so the windows fit a tile exactly), whose
    tiles cover the scene with the fewest pixels (the larger on a tie).

    Larger tiles cut the pixels the encoder sees twice: a 10,000 px square scene takes 138.7 Mpx of 512 px tiles
    against 177.2 Mpx of 256 px ones; each window is still judged as a tile of its own (``window_logits``).
    """
    window = scene_window(width, height, bundle_tile_size)
    if min(width, height) <= window:
        return window
    sizes = range(window, WINDOWS_PER_TILE * window + 1, window // 2)
    overlap_px = round(window * overlap)
    return min(sizes, key=lambda size: (_covering_pixels(width, height, size, size - overlap_px), -size))


def tile_window(tile_size: int, bundle_tile_size: int) -> int:
    """The classifier window inside a tile of ``tile_size`` (``scene_window`` of the scene it was cut for)."""
    return min(tile_size, WINDOW_FACTOR * bundle_tile_size)


def presence_window(tile_size: int, bundle_tile_size: int) -> int:
    """The window the tile classifier judges presence in, densely (``presence_logits``): the bundle's tile, the
    size of the chips it was trained to judge, or the whole tile when smaller."""
    return min(tile_size, PRESENCE_WINDOW_TILES * bundle_tile_size)


def batch_tiles(batch_size: int, tile_size: int, bundle_tile_size: int) -> int:
    """Tiles per inference batch: ``batch_size`` classifier windows' worth of pixels, at least one tile (so a
    batch of large tiles costs what a batch of window-sized ones does)."""
    return max(1, batch_size * tile_window(tile_size, bundle_tile_size) ** 2 // tile_size**2)


def scene_tiles(grid: ModelGrid, bundle_tile_size: int, overlap: float) -> list[Tile]:
    """The scene's tiles, of ``scene_tile_size``, overlapping by the fraction ``overlap`` of the classifier window."""
    size = scene_tile_size(grid.width, grid.height, bundle_tile_size, overlap)
    return tile_grid(grid, size, round(tile_window(size, bundle_tile_size) * overlap))


def tile_grid(grid: ModelGrid, tile_size: int, overlap: int) -> list[Tile]:
    """Tiles of ``tile_size`` overlapping by ``overlap`` pixels, in row-major order, covering the whole grid."""
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, {tile_size}), got {overlap}")
    stride = tile_size - overlap
    return [
        Tile(row, col, tile_size)
        for row in tile_starts(grid.height, tile_size, stride)
        for col in tile_starts(grid.width, tile_size, stride)
    ]


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``size`` every ``stride`` pixels until they cover ``length``."""
    starts = [0]
    while starts[-1] + size < length:
        starts.append(starts[-1] + stride)
    return starts


def _covering_pixels(width: int, height: int, size: int, stride: int) -> int:
    """Pixels of the tiles of ``size`` every ``stride`` pixels that cover a ``width`` x ``height`` grid."""
    return len(tile_starts(width, size, stride)) * len(tile_starts(height, size, stride)) * size**2
