"""Seeded scene mosaics of labelled tiles: large georeferenced scenes whose every cell has a known tile label.

Lone tiles judge a detector on what it never meets in use: a chip centred on its array, padded with zeros.
A mosaic lays presence-labelled tiles (the Duke Fresno tiles) side by side in a grid, a chosen share of them with
panels and the rest panel-free, so that a lone array sits among real roofs and roads as it does in a scene.
Each tile is placed once per mosaic set where it can be; a mosaic that needs more tiles of a class than there are
reuses them in another of their eight flips and quarter turns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from data_catalog import LabelledItem
from data_catalog.rasters import open_raster

MOSAIC_CELLS = 16  # cells per mosaic side: 16 x 16 Duke tiles are a 485 m square scene at 0.3 m
# Mosaics are placed side by side in WGS 84 / UTM 11N (Fresno's zone), one kilometre apart.
MOSAIC_CRS = "EPSG:32611"
MOSAIC_ORIGIN = (250_000.0, 4_080_000.0)
MOSAIC_SPACING_M = 1_000.0


@dataclass(frozen=True)
class Mosaic:
    """A mosaic GeoTIFF and the label of each of its cells (row-major, ``cell_px`` source pixels square)."""

    path: Path
    panel_share: float  # the share of cells asked to hold panels
    cells: np.ndarray  # (rows, cols) bool: the cell's tile holds panels
    cell_px: int
    gsd_m: float

    @property
    def area_km2(self) -> float:
        return self.cells.size * (self.cell_px * self.gsd_m) ** 2 / 1e6


def mosaic_items(items: Sequence[LabelledItem]) -> list[LabelledItem]:
    """The presence-labelled items that can be laid in a grid: the largest set of one source and one square tile
    shape that holds tiles both with and without panels (none when no set does)."""
    groups: dict[tuple[str, tuple[int, int]], list[LabelledItem]] = defaultdict(list)
    for item in items:
        if item.label_kind == "presence" and item.has_panels is not None and item.shape[0] == item.shape[1]:
            groups[(item.source, item.shape)].append(item)
    both = [tiles for tiles in groups.values() if len({i.has_panels for i in tiles}) == 2]
    return max(both, key=len) if both else []


def build_mosaics(items: Sequence[LabelledItem], out_dir: Path, panel_share: float, seed: int,
                  panel_free_count: int = 1, cells: int = MOSAIC_CELLS, prefix: str = "mosaic") -> list[Mosaic]:
    """Lay ``items`` (one square shape, presence labels, one ground sample distance) into mosaics of ``cells`` x
    ``cells`` tiles, ``panel_share`` of them with panels, written as GeoTIFFs into ``out_dir``.

    With a share above 0 there are as many mosaics as it takes to place every panel tile once (the last one
    topped up with reused panel tiles); with a share of 0, ``panel_free_count`` mosaics of panel-free tiles.
    Panel-free tiles are drawn with replacement. Every reuse is turned or flipped at random.
    """
    if not 0 <= panel_share < 1:
        raise ValueError(f"panel_share must be in [0, 1), got {panel_share}")
    positives = [i for i in items if i.has_panels]
    negatives = [i for i in items if not i.has_panels]
    if not negatives or (panel_share > 0 and not positives):
        raise ValueError(f"mosaics need panel-free tiles{' and panel tiles' if panel_share > 0 else ''}: got "
                         f"{len(positives)} with panels and {len(negatives)} without")
    gsds = {i.gsd_m for i in items}
    if len(gsds) != 1 or None in gsds:
        raise ValueError(f"mosaic tiles must share one known ground sample distance, got {sorted(map(str, gsds))}")
    gsd = float(gsds.pop())
    rng = np.random.default_rng(seed)
    per_mosaic = max(1, round(panel_share * cells * cells)) if panel_share > 0 else 0
    count = -(-len(positives) // per_mosaic) if per_mosaic else panel_free_count
    dealt = list(rng.permutation(len(positives))) if positives else []
    while len(dealt) < count * per_mosaic:  # the last mosaic is topped up with reused panel tiles
        dealt.append(int(rng.integers(len(positives))))
    out_dir.mkdir(parents=True, exist_ok=True)
    cell_px = items[0].shape[0]
    mosaics = []
    for m in range(count):
        labels = np.zeros(cells * cells, dtype=bool)
        labels[rng.choice(cells * cells, per_mosaic, replace=False)] = True
        mine = iter(dealt[m * per_mosaic:(m + 1) * per_mosaic])
        chosen = [positives[next(mine)] if panel else negatives[int(rng.integers(len(negatives)))]
                  for panel in labels]
        path = out_dir / f"{prefix}-{round(panel_share * 100):02d}pct-{m:02d}.tif"
        _write_mosaic(path, chosen, cells, cell_px, gsd, m, rng)
        mosaics.append(Mosaic(path, panel_share, labels.reshape(cells, cells), cell_px, gsd))
    return mosaics


def _write_mosaic(path: Path, tiles: list[LabelledItem], cells: int, cell_px: int, gsd: float, index: int,
                  rng: np.random.Generator) -> None:
    """Write the tiles (row-major) as one RGB GeoTIFF, each in a random one of its eight flips and turns."""
    image = np.zeros((3, cells * cell_px, cells * cell_px), dtype=np.uint8)
    for k, item in enumerate(tiles):
        with open_raster(item.image_path) as src:
            pixels = src.read([1, 2, 3])
        if pixels.dtype != np.uint8:
            raise ValueError(f"{item.image_path}: mosaics take 8-bit tiles, got {pixels.dtype}")
        pixels = np.rot90(pixels, int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            pixels = pixels[:, :, ::-1]
        r, c = divmod(k, cells)
        image[:, r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px] = pixels
    x0, y0 = MOSAIC_ORIGIN
    transform = Affine(gsd, 0.0, x0 + index * MOSAIC_SPACING_M, 0.0, -gsd, y0)
    profile = {"driver": "GTiff", "width": image.shape[2], "height": image.shape[1], "count": 3, "dtype": "uint8",
               "crs": MOSAIC_CRS, "transform": transform, "tiled": True, "compress": "deflate",
               "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
