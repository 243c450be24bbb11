"""Pixel values -> model input: scaling by data type and per-band normalisation from the model bundle.

Training and scoring both go through these functions, so a model always sees inputs prepared the same way.
"""

from __future__ import annotations

import numpy as np

# Full-scale value per integer data type; float imagery is taken to be reflectance-like in [0, 1].
_FULL_SCALE = {np.dtype("uint8"): 255.0, np.dtype("uint16"): 65535.0, np.dtype("int16"): 32767.0}


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """Scale raw pixels (any band layout) to float32 in [0, 1] by their data type."""
    scale = _FULL_SCALE.get(pixels.dtype)
    if scale is not None:
        return pixels.astype(np.float32) / np.float32(scale)
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
