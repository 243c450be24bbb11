"""Prepared items (``pipelines.prepared``: read once, at the training GSD, kept in memory) -> training samples.

Each sample is a random crop of ``tile_size`` pixels with its tile label, its pixel mask and a weight map that
says where the pixel loss applies (nowhere for positive presence-only tiles, never on padding).
"""

from __future__ import annotations

import logging

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipelines.normalisation import normalise
from pipelines.prepared import MIN_PANEL_PIXELS, PreparedItem
from pipelines.training.copy_paste import CopyPaste

log = logging.getLogger(__name__)

def band_statistics(prepared: list[PreparedItem]) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over every training pixel (unit range)."""
    channels = prepared[0].image.shape[-1]
    total = np.zeros(channels, np.float64)
    total_sq = np.zeros(channels, np.float64)
    count = 0
    for p in prepared:
        pixels = p.image.reshape(-1, channels).astype(np.float64)
        total += pixels.sum(0)
        total_sq += (pixels**2).sum(0)
        count += pixels.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-8))
    return mean.tolist(), std.tolist()


def default_augmentation() -> A.Compose:
    """Geometric and radiometric augmentation applied to each crop (image, mask and loss weights together)."""
    return A.Compose([
        A.D4(),
        A.Affine(scale=(0.8, 1.25), rotate=(-10, 10), p=0.4, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.6),
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=10, val_shift_limit=0, p=0.3),
        A.GaussNoise(std_range=(0.0, 0.02), p=0.2),
    ])


class TileSampleDataset(Dataset):
    """Random training crops: index ``i`` crops item ``i % len(items)`` at a random place.

    Returns ``image`` (C, T, T) normalised, ``target`` (tile label), ``mask`` (1, T, T), ``weight`` (1, T, T)
    (where the mask is known) and ``bag`` (1, T, T): with ``bags``, the pixels of a crop known only to hold panels
    somewhere (a positive presence label: bag id 1) or of a panel-free presence item (bag id -1: its most
    panel-like pixels are taught background; its mask is known empty too), and ``mosaic`` 0 (the
    crop of one item, not of a mosaic: ``pipelines.training.mosaics``).
    ``copy_paste`` (before the other augmentation) may paste panels onto crops with a known, empty mask.
    """

    def __init__(self, prepared: list[PreparedItem], tile_size: int, mean: list[float], std: list[float],
                 augment: A.Compose | None = None, positive_crop_rate: float = 0.6,
                 copy_paste: CopyPaste | None = None, bags: bool = False) -> None:
        self.prepared = prepared
        self.tile_size = tile_size
        self.mean, self.std = mean, std
        self.augment = augment
        self.positive_crop_rate = positive_crop_rate
        self.copy_paste = copy_paste
        self.bags = bags

    def __len__(self) -> int:
        return len(self.prepared)

    def _crop_origin(self, p: PreparedItem, rng: np.random.Generator) -> tuple[int, int]:
        h, w = p.image.shape[:2]
        t = self.tile_size
        max_y, max_x = max(h - t, 0), max(w - t, 0)
        if p.mask is not None and p.has_panels and rng.random() < self.positive_crop_rate:
            ys, xs = np.nonzero(p.mask)
            k = rng.integers(len(ys))
            y = int(np.clip(ys[k] - rng.integers(t // 4, 3 * t // 4 + 1), 0, max_y))
            x = int(np.clip(xs[k] - rng.integers(t // 4, 3 * t // 4 + 1), 0, max_x))
            return y, x
        return int(rng.integers(max_y + 1)), int(rng.integers(max_x + 1))

    def sample(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        p = self.prepared[index % len(self.prepared)]
        t = self.tile_size
        y, x = self._crop_origin(p, rng)
        crop = p.image[y:y + t, x:x + t].astype(np.float32)
        h, w = crop.shape[:2]
        image = np.zeros((t, t, crop.shape[2]), np.float32)
        image[:h, :w] = crop
        valid = np.zeros((t, t), np.uint8)
        valid[:h, :w] = 1
        mask = np.zeros((t, t), np.uint8)
        if p.mask is not None:
            mask[:h, :w] = p.mask[y:y + t, x:x + t]
        weight = valid if p.mask is not None else np.zeros_like(valid)
        bag = np.zeros((t, t), np.int16)
        if self.bags and p.item.label_kind == "presence":  # a panel bag, or a panel-free one (bag id -1)
            bag = valid.astype(np.int16) * (1 if p.has_panels else -1)
        if self.copy_paste is not None and p.mask is not None:
            image, mask = self.copy_paste(image, mask, valid, rng)
        if self.augment is not None:
            self.augment.set_random_seed(int(rng.integers(2**31)))  # reproducible from the sample's seed
            out = self.augment(image=image, masks=[mask, weight, valid, bag])
            image, (mask, weight, valid, bag) = out["image"], out["masks"]
        has_panels = bool(mask.sum() >= MIN_PANEL_PIXELS) if p.mask is not None else p.has_panels
        chw = normalise(np.moveaxis(image, -1, 0), self.mean, self.std) * valid[None]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32)),
            "target": torch.tensor(float(has_panels)),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "weight": torch.from_numpy(weight[None].astype(np.float32)),
            "bag": torch.from_numpy(bag[None].astype(np.float32)),
            "mosaic": torch.tensor(0.0),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seed = torch.randint(0, 2**31 - 1, (1,)).item()  # follows torch's (seeded, resumable) RNG stream
        return self.sample(index, np.random.default_rng(seed))


def sampling_weights(prepared: list[PreparedItem], tile_size: int, source_weights: dict[str, float] | None = None,
                     cap: float = 6.0) -> list[float]:
    """Draw weights: a large scene counts for the crops it holds, up to ``cap``, so one big image
    cannot crowd out hundreds of small tiles; ``source_weights`` then scales each source's items (default 1)."""
    source_weights = source_weights or {}
    sources = {p.item.source for p in prepared}
    unknown = sorted(set(source_weights) - sources)
    if unknown:
        raise ValueError(f"source_weights names {', '.join(unknown)}, which no training item comes from "
                         f"(training sources: {', '.join(sorted(sources))})")
    return [
        min(cap, max(1.0, p.image.shape[0] * p.image.shape[1] / tile_size**2)) * source_weights.get(p.item.source, 1.0)
        for p in prepared
    ]
