"""Test-time augmentation over the eight flips and quarter turns of an image (the dihedral group of the square).

Overhead panels have no preferred orientation, so a pixel map averaged over the eight views of a tile is a better
estimate than any one of them. ``torch.rot90`` and ``torch.flip`` do the work; what no library provides is the
pairing of each view with its inverse over a model call, which is this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

VIEWS = 8  # four quarter turns, each with and without a left-right flip


def view(x: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` (0-7) of a batch: ``k % 4`` quarter turns of its last two axes, after a flip when ``k >= 4``."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def unview(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of ``view(., k)``: maps a prediction made on view ``k`` back onto the original pixels."""
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def dihedral_mean(
    x: torch.Tensor,
    predict: Callable[[torch.Tensor], torch.Tensor],
    first: torch.Tensor | None = None,
    batch: int | None = None,
) -> torch.Tensor:
    """Mean of ``predict`` (a map with the input's last two axes, e.g. pixel probabilities) over the eight views
    of ``x``, each mapped back onto ``x``'s pixels. ``first`` is ``predict(x)`` where the caller already has it.

    The seven other views are stacked and handed to ``predict`` in batches of up to ``batch`` items (default: as
    many as ``x`` holds), so a model that pads short batches to a fixed size gets full ones.
    """
    n = len(x)
    total = (predict(x) if first is None else first).float()
    square = x.shape[-1] == x.shape[-2]
    groups = [range(1, VIEWS)] if square else [range(2, VIEWS, 2), range(1, VIEWS, 2)]  # turns swap the axes
    for views in groups:
        stacked = torch.cat([view(x, k) for k in views])
        predicted = torch.cat([predict(part) for part in stacked.split(batch or n)])
        for k, part in zip(views, predicted.split(n), strict=True):
            total = total + unview(part, k).float()
    return total / VIEWS
