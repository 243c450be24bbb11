"""Scene probability rasters on disk: the blended model-grid raster, and the per-input mask written for users.

Probabilities are stored as uint8 (0..255 for 0..1), tiled, so neither raster is ever held whole in memory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Self

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from pipelines.scenes import Scene
from pipelines.tiling import ModelGrid
from pipelines.timing import timed

_TILED = {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}


def to_uint8(probability: np.ndarray) -> np.ndarray:
    """Probabilities (0..1, float) as the 0-255 uint8 values every probability raster stores."""
    return np.rint(np.clip(probability, 0.0, 1.0) * 255.0).astype(np.uint8)


class ModelGridProbability:
    """The blended probability raster of a scene on its model grid, in a temporary GeoTIFF."""

    def __init__(self, path: Path, grid: ModelGrid) -> None:
        self.path, self.grid = path, grid
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", NotGeoreferencedWarning
            )  # a pixel grid only; never shown to users
            self._dataset = rasterio.open(
                path,
                "w+",
                driver="GTiff",
                width=grid.width,
                height=grid.height,
                count=1,
                dtype="uint8",
                **_TILED,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._dataset.close()
        self.path.unlink(missing_ok=True)

    @timed("write")
    def write_rows(self, row: int, probability: np.ndarray) -> None:
        """Sink for ``StripBlender``: store blended rows."""
        self._dataset.write(
            to_uint8(probability), 1, window=Window(0, row, probability.shape[1], probability.shape[0])
        )

    @timed("resample")
    def read_source_rows(self, scene: Scene, row: int, rows: int) -> np.ndarray:
        """Probability (uint8) of source rows [row, row + rows) on the scene's own pixel grid, resampled bilinearly."""
        window = Window(0, row / self.grid.scale_y, self.grid.width, rows / self.grid.scale_y)
        return self._dataset.read(
            1, window=window, out_shape=(rows, scene.width), resampling=Resampling.bilinear
        )


class MaskWriter:
    """Writes a scene's uint8 probability raster on its own pixel grid: GeoTIFF when georeferenced, PNG otherwise.

    The file appears only when complete (written under a temporary name, then renamed).
    """

    def __init__(self, scene: Scene, masks_dir: Path) -> None:
        masks_dir.mkdir(parents=True, exist_ok=True)
        suffix = ".tif" if scene.georeferenced else ".png"
        self.path = masks_dir / f"{scene.path.stem}{suffix}"
        self._tiff = masks_dir / f".{scene.path.stem}.{os.getpid()}.partial.tif"
        georef = {"crs": scene.crs, "transform": scene.transform} if scene.georeferenced else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._dataset = rasterio.open(
                self._tiff,
                "w",
                driver="GTiff",
                width=scene.width,
                height=scene.height,
                count=1,
                dtype="uint8",
                **georef,
                **_TILED,
            )

    @timed("write")
    def write_rows(self, row: int, probability: np.ndarray) -> None:
        """Write uint8 probability rows of the scene, the first being source row ``row``."""
        self._dataset.write(probability, 1, window=Window(0, row, probability.shape[1], probability.shape[0]))

    def close(self, keep: bool) -> None:
        """Finish the file (``keep``) or discard it."""
        self._dataset.close()
        try:
            if keep and self.path.suffix == ".tif":
                os.replace(self._tiff, self.path)
            elif keep:
                # PNG cannot be written window by window; convert the finished GeoTIFF in one pass.
                partial_png = self._tiff.with_suffix(".png")
                rasterio.shutil.copy(self._tiff, partial_png, driver="PNG")
                os.replace(partial_png, self.path)
                partial_png.with_name(partial_png.name + ".aux.xml").unlink(missing_ok=True)
        finally:
            self._tiff.unlink(missing_ok=True)
