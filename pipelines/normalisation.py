"""Pixel values -> model input: scaling by data type and per-band normalisation from the model bundle.

Training and scoring both go through these functions, so a model always sees inputs prepared the same way.
"""

from __future__ import annotations

import numpy as np
import rasterio

# Full-scale value per integer data type; float imagery is taken to be reflectance-like in [0, 1].
_FULL_SCALE = {np.dtype("uint8"): 255.0, np.dtype("uint16"): 65535.0, np.dtype("int16"): 32767.0}


def full_scale(dataset: rasterio.DatasetReader, band: int = 1) -> float | None:
    """The full-scale value a raster declares for its integer band ``band`` (GDAL's ``NBITS``, e.g. 12 for 12-bit
    data stored as uint16: 4095), or None where it declares none and its data type's range applies."""
    nbits = dataset.tags(band, ns="IMAGE_STRUCTURE").get("NBITS")
    return float(2 ** int(nbits) - 1) if nbits is not None and nbits.isdigit() else None


def to_unit_range(pixels: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Scale raw pixels (any band layout) to float32 in [0, 1] by their data type, or for integer pixels by the
    ``scale`` a raster declares (``full_scale``)."""
    if pixels.dtype in _FULL_SCALE:
        if scale is None:
            return pixels.astype(np.float32) / np.float32(_FULL_SCALE[pixels.dtype])
        return np.clip(pixels.astype(np.float32) / np.float32(scale), 0.0, 1.0)  # values past the declared depth
    if np.issubdtype(pixels.dtype, np.floating):
        return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)
    raise ValueError(f"unsupported pixel data type {pixels.dtype}; expected uint8, uint16, int16 or float")


def normalise(unit: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Per-band standardisation of a (C, H, W) or (N, C, H, W) unit-range array with the bundle's statistics."""
    channels = unit.shape[-3]
    if channels != len(mean):
        raise ValueError(f"image has {channels} bands but the model expects {len(mean)}")
    shape = (channels, 1, 1)
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray(std, dtype=np.float32).reshape(shape)
    return (unit - m) / s
