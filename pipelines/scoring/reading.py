"""Windowed, resampled reads of scenes into normalised model input, with reads running ahead of inference."""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Self

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from pipelines.errors import SceneReadError
from pipelines.normalisation import normalise, to_unit_range
from pipelines.scenes import Scene, expand_palette
from pipelines.tiling import ModelGrid, Tile
from pipelines.timing import stage

# GDAL's block cache defaults to 5 % of RAM and fills with blocks of the scene and of the probability raster that
# are never read again, so it grew peak RSS with scene size (measured +64 % for 4x the area with the default on a
# 24 GiB machine). Tiles are read in row-major order, so a few rows of blocks are all that is ever reused: 256 MB
# holds four rows of 512 px RGB blocks of a 40,000 px wide scene. A user's own GDAL_CACHEMAX wins.
GDAL_CACHE_BYTES = 256 * 2**20


def gdal_cache_env() -> rasterio.Env:
    """The GDAL settings scoring and quicklooks read under: a bounded block cache unless the user set
    ``GDAL_CACHEMAX``."""
    # rasterio.Env takes GDAL_CACHEMAX in bytes (GDAL's environment variable reads small numbers as MB).
    return rasterio.Env() if "GDAL_CACHEMAX" in os.environ else rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)


@dataclass(frozen=True)
class TileBatch:
    """Normalised pixels (N, C, T, T) float32, the tiles they came from and their valid-pixel masks (N, T, T)."""

    pixels: np.ndarray
    tiles: list[Tile]
    valid: np.ndarray


class SceneReader:
    """Reads model-grid tiles and source-grid validity masks of one scene; safe to use from several threads.

    GDAL dataset handles must not be shared between threads, so each thread opens its own.
    """

    def __init__(self, scene: Scene, grid: ModelGrid, norm_mean: list[float], norm_std: list[float]) -> None:
        self.scene, self.grid = scene, grid
        self._mean, self._std = norm_mean, norm_std
        self._local = threading.local()
        self._handles: list[rasterio.DatasetReader] = []
        self._lock = threading.Lock()
        # 16-bit scenes that declare no bit depth: the highest valid value read, for ``dim_range_warning``
        self._tracks_range = (
            np.dtype(scene.dtype).itemsize == 2 and scene.full_scale is None and scene.palette is None
        )
        self._brightest = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's dataset handle."""
        with self._lock:
            for handle in self._handles:
                handle.close()
            self._handles.clear()

    def _dataset(self) -> rasterio.DatasetReader:
        handle = getattr(self._local, "dataset", None)
        if handle is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                handle = rasterio.open(self.scene.path)
            self._local.dataset = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def _read(
        self, window: Window, out_shape: tuple[int, int], resampling: Resampling
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bands in model order and their all-bands validity (nodata, alpha, NaN) over a source window."""
        palette = self.scene.palette
        indexes = list(self.scene.band_indexes)
        shape = (len(indexes), *out_shape)
        try:
            dataset = self._dataset()
            with stage("read"):
                # Colour-map indexes are categories: they are resampled by nearest neighbour, then looked up.
                pixels = dataset.read(indexes, window=window, out_shape=shape,
                                      resampling=resampling if palette is None else Resampling.nearest)
                masks = dataset.read_masks(indexes, window=window, out_shape=shape, resampling=Resampling.nearest)
        except RasterioError as exc:
            raise SceneReadError(
                f"{self.scene.path}: reading pixels {window} failed ({exc}); the file may be truncated or corrupt"
            ) from None
        valid = (masks > 0).all(axis=0)
        if palette is not None:
            pixels, opaque = expand_palette(pixels[0], palette)
            valid &= opaque
        elif np.issubdtype(pixels.dtype, np.floating):
            valid &= np.isfinite(pixels).all(axis=0)
        return pixels, valid

    def read_tile(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """Normalised pixels (C, T, T) and validity (T, T) of a tile; padding and invalid pixels are zero (the
        normalised mean colour, as chips smaller than the model's tile were padded in training)."""
        window = tile.window(self.grid)
        h, w = int(window.height), int(window.width)
        raw, valid = self._read(self.grid.source_window(window), (h, w), Resampling.bilinear)
        top, left = int(window.row_off) - tile.row, int(window.col_off) - tile.col
        with stage("normalise"):
            pixels = np.zeros((raw.shape[0], tile.size, tile.size), np.float32)
            mask = np.zeros((tile.size, tile.size), bool)
            pixels[:, top:top + h, left:left + w] = np.where(
                valid, normalise(to_unit_range(raw, self.scene.full_scale), self._mean, self._std), 0.0
            )
            mask[top:top + h, left:left + w] = valid
        if self._tracks_range and valid.any():
            brightest = int(raw[:, valid].max())
            with self._lock:
                self._brightest = max(self._brightest, brightest)
        return pixels, mask

    def dim_range_warning(self) -> str | None:
        """A warning for a 16-bit scene whose pixels read so far use at most a sixteenth of the type's range (as
        11- or 12-bit data stored as 16 bits does) without declaring its bit depth: scaled by the type's full
        range, the model sees it almost black."""
        if not self._tracks_range or self._brightest == 0:
            return None
        dtype = np.dtype(self.scene.dtype)
        top = np.iinfo(dtype).max
        if self._brightest > top // 16:
            return None
        bits = max(8, int(self._brightest).bit_length())
        return (
            f"{self.scene.path}: its {dtype} pixels reach only {self._brightest} of {top}, so scaled by {top} the "
            f"model sees them almost black; if it holds {bits}-bit data, score it again with --bit-depth {bits}, or "
            f"declare it (gdal_translate -co NBITS={bits}) or rescale it to 8 bits "
            f"(gdal_translate -ot Byte -scale 0 {2**bits - 1} 0 255)"
        )

    def read_valid(self, window: Window) -> np.ndarray:
        """Validity of the source pixels in ``window`` (source grid, no resampling)."""
        return self._read(window, (int(window.height), int(window.width)), Resampling.nearest)[1]


def iter_batches(
    reader: SceneReader, tiles: list[Tile], batch_size: int, workers: int
) -> Iterator[TileBatch]:
    """Batches of tiles in order, read by ``workers`` threads that keep a few batches ahead of the consumer
    (``workers=0``: read in the calling thread, between batches)."""
    if workers == 0:
        for start in range(0, len(tiles), batch_size):
            chunk = tiles[start:start + batch_size]
            yield _batch(chunk, [reader.read_tile(t) for t in chunk])
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="solarscan-read") as pool:
        ahead = batch_size * (workers + 1)
        pending: deque[tuple[Tile, Future]] = deque()
        queue = iter(tiles)
        try:
            while True:
                while len(pending) < ahead and (tile := next(queue, None)) is not None:
                    pending.append((tile, pool.submit(reader.read_tile, tile)))
                if not pending:
                    return
                chunk = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                yield _batch([t for t, _ in chunk], [future.result() for _, future in chunk])
        finally:
            for _, future in pending:
                future.cancel()


def _batch(tiles: list[Tile], results: list[tuple[np.ndarray, np.ndarray]]) -> TileBatch:
    return TileBatch(
        pixels=np.stack([r[0] for r in results]), tiles=tiles, valid=np.stack([r[1] for r in results])
    )
