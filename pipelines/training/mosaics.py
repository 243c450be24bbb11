"""Training crops cut from random mosaics of presence-labelled tiles, so the detector learns scenes, not chips.

A lone chip teaches what a centred, zero-padded array looks like; in a scene the same array is one small part of a
view full of other roofs. Each mosaic crop lays tiles of one shape in a grid, a few of them with panels: panel-free
cells are known empty masks (pixel-level negatives), and each panel cell is a bag of its own (its most confident
pixels must say panel; ``detection_loss``), and each panel-free cell a panel-free bag (its most confident pixels
must say background). Only cells whose middle lies well inside the crop hold panels, so
no array is cut off at the crop's edge.
"""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from pipelines.mosaics import mosaic_items
from pipelines.normalisation import normalise
from pipelines.prepared import MIN_PANEL_PIXELS, PreparedItem
from pipelines.training.data import TileSampleDataset, default_augmentation

PANEL_CELL_RATE = 0.35  # chance that a mosaic cell holds one of the panel tiles


class MosaicSampleDataset:
    """Crops of ``tile_size`` from mosaics of ``tiles`` (prepared presence items of one square shape).

    ``sample`` returns what ``TileSampleDataset.sample`` returns; ``bag`` holds each cell's id: 1, 2, ... for
    panel cells, -1, -2, ... for panel-free ones.
    """

    def __init__(self, tiles: list[PreparedItem], tile_size: int, mean: list[float], std: list[float],
                 augment: A.Compose | None = None, panel_cell_rate: float = PANEL_CELL_RATE) -> None:
        self.positives = [p for p in tiles if p.has_panels]
        self.negatives = [p for p in tiles if not p.has_panels]
        if not self.positives or not self.negatives:
            raise ValueError(f"mosaic crops need tiles with and without panels, got {len(self.positives)} and "
                             f"{len(self.negatives)}")
        self.cell = tiles[0].image.shape[0]
        self.cells = -(-tile_size // self.cell) + 1  # per side: any crop position holds whole cells around it
        self.tile_size = tile_size
        self.mean, self.std = mean, std
        self.augment = augment
        self.panel_cell_rate = panel_cell_rate

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        n, cell, t = self.cells, self.cell, self.tile_size
        side = n * cell
        y, x = (int(v) for v in rng.integers(side - t + 1, size=2))
        image = np.zeros((side, side, self.positives[0].image.shape[2]), np.float32)
        bag = np.zeros((side, side), np.int16)
        for k in range(n * n):
            r, c = divmod(k, n)
            # only a cell whose middle lies well inside the crop may hold panels: its array is then in view
            middle = ((r + 0.5) * cell - y, (c + 0.5) * cell - x)
            central = all(cell / 4 <= m <= t - cell / 4 for m in middle)
            panel = central and rng.random() < self.panel_cell_rate
            pool = self.positives if panel else self.negatives
            tile = np.rot90(pool[int(rng.integers(len(pool)))].image, int(rng.integers(4)))
            image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = tile[:, ::-1] if rng.random() < 0.5 else tile
            bag[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = k + 1 if panel else -(k + 1)
        crop_image, crop_bag = image[y:y + t, x:x + t], bag[y:y + t, x:x + t]
        weight = (crop_bag < 0).astype(np.uint8)
        mask = np.zeros((t, t), np.uint8)
        valid = np.ones((t, t), np.uint8)
        if self.augment is not None:
            self.augment.set_random_seed(int(rng.integers(2**31)))
            out = self.augment(image=crop_image, masks=[mask, weight, valid, crop_bag])
            crop_image, (mask, weight, valid, crop_bag) = out["image"], out["masks"]
        chw = normalise(np.moveaxis(crop_image, -1, 0), self.mean, self.std) * valid[None]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32)),
            "target": torch.tensor(float((crop_bag > 0).sum() >= MIN_PANEL_PIXELS)),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "weight": torch.from_numpy((weight * valid)[None].astype(np.float32)),
            "bag": torch.from_numpy((crop_bag * (valid > 0))[None].astype(np.float32)),
            "mosaic": torch.tensor(1.0),
        }


def mosaic_dataset(prepared: list[PreparedItem], tile_size: int, mean: list[float],
                   std: list[float]) -> MosaicSampleDataset:
    """Mosaic crops of the prepared training items that can be laid in a grid (``mosaic_items``)."""
    tiles = {id(i) for i in mosaic_items([p.item for p in prepared])}
    chosen = [p for p in prepared if id(p.item) in tiles]
    if not chosen:
        raise ValueError("mosaic_rate > 0 needs presence-labelled square tiles among the training items; there are none")
    return MosaicSampleDataset(chosen, tile_size, mean, std, default_augmentation())


class MixedCropDataset(Dataset):
    """``crops``' samples, each replaced by a mosaic crop with probability ``mosaic_rate``."""

    def __init__(self, crops: TileSampleDataset, mosaics: MosaicSampleDataset, mosaic_rate: float) -> None:
        self.crops, self.mosaics, self.mosaic_rate = crops, mosaics, mosaic_rate

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seed = torch.randint(0, 2**31 - 1, (1,)).item()  # follows torch's (seeded, resumable) RNG stream
        rng = np.random.default_rng(seed)
        if rng.random() < self.mosaic_rate:
            return self.mosaics.sample(rng)
        return self.crops.sample(index, rng)
