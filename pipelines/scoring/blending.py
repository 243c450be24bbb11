"""Blending overlapping tile maps into a scene probability raster, one strip of rows at a time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.tiling import Tile
from pipelines.timing import timed

RowSink = Callable[[int, np.ndarray], None]  # (first row, probabilities (rows, width) float32)
# Finished rows are averaged and handed over this many at a time, so that the temporaries of averaging and of
# the sink stay small however wide the scene and however tall its tiles.
SINK_ROWS = 64


def hann_weights(size: int) -> np.ndarray:
    """2-D Hann window, highest in the tile centre and small (never zero) at its edges.

    Sampled at pixel centres so every pixel keeps a positive weight: pixels that only one tile sees
    (scene borders) keep that tile's prediction after normalisation.
    """
    ramp = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return np.outer(ramp, ramp).astype(np.float32)


class StripBlender:
    """Weighted average of tile maps on a grid, fed tiles in row-major order.

    Holds only one tile-height of rows; rows no later tile can touch are averaged and handed to ``sink``.
    Pixels with zero total weight (nodata, never covered) come out as probability 0.
    """

    def __init__(self, height: int, width: int, tile_size: int, sink: RowSink) -> None:
        self.height, self.width, self.tile_size, self.sink = height, width, tile_size, sink
        padded_width = width + tile_size
        self._weighted = np.zeros((tile_size, padded_width), np.float32)
        self._weights = np.zeros((tile_size, padded_width), np.float32)
        self._top = 0  # grid row held in buffer row 0

    @timed("blend")
    def add(self, tile: Tile, probability: np.ndarray, weight: np.ndarray) -> None:
        """Blend one tile's (T, T) probability with its (T, T) weight (already zero where invalid)."""
        if tile.row < self._top:
            raise ValueError(f"tiles must come in row-major order; row {tile.row} is already written")
        self._flush(tile.row - self._top)
        cols = slice(tile.col, tile.col + tile.size)
        self._weighted[:, cols] += probability * weight
        self._weights[:, cols] += weight

    @timed("blend")
    def close(self) -> None:
        """Hand over every remaining row and free the buffers (the scene's width times a tile's height, twice)."""
        while self._top < self.height:
            self._flush(min(self.tile_size, self.height - self._top))
        self._weighted = self._weights = np.zeros((0, 0), np.float32)

    def _flush(self, rows: int) -> None:
        if rows <= 0:
            return
        emit = min(rows, self.height - self._top)
        held = min(emit, self.tile_size)
        for start in range(0, held, SINK_ROWS):
            chunk = slice(start, min(held, start + SINK_ROWS))
            weights = self._weights[chunk, : self.width]
            blended = np.divide(
                self._weighted[chunk, : self.width], weights, out=np.zeros_like(weights), where=weights > 0
            )
            self.sink(self._top + start, blended)
        # Rows below the buffer: no tile was added there (a band of tiles wholly nodata), so probability 0.
        for start in range(held, emit, SINK_ROWS):
            self.sink(self._top + start, np.zeros((min(emit - start, SINK_ROWS), self.width), np.float32))
        kept = max(0, self.tile_size - rows)
        for buffer in (self._weighted, self._weights):
            # In blocks of at most ``rows`` rows, which never overlap their source: an overlapping assignment
            # would go through a temporary copy of the kept rows.
            for start in range(0, kept, rows):
                stop = min(kept, start + rows)
                buffer[start:stop] = buffer[start + rows:stop + rows]
            buffer[kept:] = 0.0
        self._top += rows
