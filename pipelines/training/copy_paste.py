"""Copy-paste augmentation: real panels, cut out along their masks, pasted onto panel-free training crops."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.metrics import EIGHT_CONNECTED


@dataclass(frozen=True)
class Cutout:
    """One panel: its pixels (h, w, C) and its shape (h, w) inside the bounding box."""

    image: np.ndarray
    mask: np.ndarray


def cut_panels(labelled: Iterable[tuple[np.ndarray, np.ndarray]], max_size: int, min_pixels: int) -> list[Cutout]:
    """Every connected panel of the (image, mask) pairs with ``min_pixels`` or more whose box fits ``max_size``."""
    cutouts = []
    for image, mask in labelled:
        components, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            shape = components[box] == index
            if shape.sum() >= min_pixels and max(shape.shape) <= max_size:
                cutouts.append(Cutout(image[box].astype(np.float32), shape))
    return cutouts


class CopyPaste:
    """With probability ``rate``, paste 1 to ``max_panels`` random cut-outs (turned by a random multiple of 90
    degrees) at random places of a crop whose mask holds no panel; the mask gains the pasted shapes."""

    def __init__(self, cutouts: list[Cutout], rate: float, max_panels: int = 3) -> None:
        self.cutouts = cutouts
        self.rate = rate
        self.max_panels = max_panels

    def __call__(self, image: np.ndarray, mask: np.ndarray, valid: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(image, mask) with panels pasted inside ``valid``; the inputs unchanged when nothing is pasted."""
        if not self.cutouts or mask.any() or rng.random() >= self.rate:
            return image, mask
        image, mask = image.copy(), mask.copy()
        height, width = mask.shape
        for _ in range(int(rng.integers(1, self.max_panels + 1))):
            cutout = self.cutouts[int(rng.integers(len(self.cutouts)))]
            turns = int(rng.integers(4))
            pixels, shape = np.rot90(cutout.image, turns), np.rot90(cutout.mask, turns)
            h, w = shape.shape
            if h > height or w > width:
                continue
            y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
            window = (slice(y, y + h), slice(x, x + w))
            paste = shape & valid[window].astype(bool)
            image[window][paste] = pixels[paste]
            mask[window][paste] = 1
        return image, mask
