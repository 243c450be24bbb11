"""Training PanelNet from a labelled catalog: mixed supervision, one-cycle AdamW, resumable, early stopping."""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from data_catalog import Catalog, LabelledItem
from models import BundleMetadata, build_model, load_bundle, save_bundle
from pipelines.runtime import Runtime
from pipelines.training_data import (
    PreparedItem, TileSampleDataset, band_statistics, default_augmentation, prepare_item, sampling_weights,
)
from pipelines.validation import evaluate_prepared, selection_score

log = logging.getLogger(__name__)

BANDS = ["red", "green", "blue"]
LAST_CHECKPOINT = "last.pt"
BEST_BUNDLE = "best.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; recorded in the run folder."""

    catalog: Path
    out: Path
    architecture: str = "panelnet_res2netplus50"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: Path | None = None
    epochs: int = 30
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    tile_size: int = 96
    gsd_m: float = 0.3
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    mixup_rate: float = 0.25
    pixel_loss_weight: float = 1.0
    patience: int = 8
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    workers: int = 0
    seed: int = 0
    resume: bool = False
    weak_positive_max_year: int | None = 2019

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain values; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**values)


def usable_for_training(item: LabelledItem, max_year: int | None) -> bool:
    """Weak registry positives are kept only where the plant predates the imagery (year <= ``max_year``)."""
    first = str(item.properties.get("registry_first_operation", ""))
    return max_year is None or not first[:4].isdigit() or int(first[:4]) <= max_year


def prepare_split(items: list[LabelledItem], config: TrainConfig, for_training: bool) -> list[PreparedItem]:
    """Read and resample items, skipping (and logging) unreadable ones.

    For training, positive presence-only items much larger than a crop are left out: a random crop of them
    may well miss the panels, so its label would be wrong.
    """
    prepared = []
    for item in items:
        try:
            p = prepare_item(item, config.gsd_m, len(BANDS))
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: %s", item.id, exc)
            continue
        if for_training and p.mask is None and max(p.image.shape[:2]) > 1.5 * config.tile_size:
            log.info("not training on %s: presence-only label on an image larger than a crop", item.id)
            continue
        prepared.append(p)
    return prepared


def mixup(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """MixUp: blend each sample with a shuffled partner; pixel loss only where both masks are known."""
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(batch["image"].shape[0], generator=generator)
    mixed = {k: lam * v + (1 - lam) * v[perm] for k, v in batch.items() if k != "weight"}
    mixed["weight"] = batch["weight"] * batch["weight"][perm]
    return mixed


def detection_loss(output, batch: dict[str, torch.Tensor], pixel_weight: float) -> tuple[torch.Tensor, dict]:
    """Tile BCE plus pixel BCE + soft Dice where the pixel label is known."""
    tile = F.binary_cross_entropy_with_logits(output.tile_logit.float(), batch["target"])
    logits, mask, weight = output.mask_logit.float(), batch["mask"], batch["weight"]
    known = weight.sum()
    if known > 0:
        bce = (F.binary_cross_entropy_with_logits(logits, mask, reduction="none") * weight).sum() / known
        prob = torch.sigmoid(logits) * weight
        dice = 1 - (2 * (prob * mask).sum() + 1) / (prob.sum() + (mask * weight).sum() + 1)
        pixel = bce + dice
    else:
        pixel = logits.sum() * 0.0
    return tile + pixel_weight * pixel, {"tile_loss": float(tile.detach()), "pixel_loss": float(pixel.detach())}


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(config: TrainConfig, progress: bool | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns the best validation metrics. Writes into ``config.out``."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    progress = sys.stderr.isatty() if progress is None else progress
    runtime = Runtime.resolve(config.device, config.precision, channels_last=config.channels_last)

    catalog = Catalog.open(config.catalog)
    train_items = [i for i in catalog.items("train") if usable_for_training(i, config.weak_positive_max_year)]
    prepared_train = prepare_split(train_items, config, for_training=True)
    val_items = [i for i in catalog.items("val") if usable_for_training(i, config.weak_positive_max_year)]
    prepared_val = prepare_split(val_items, config, for_training=False)
    if not prepared_train:
        raise ValueError(f"catalog {config.catalog} has no usable training items")

    if config.init_from is not None:
        base = load_bundle(config.init_from)
        model, mean, std = base.model, base.metadata.norm_mean, base.metadata.norm_std
        architecture, model_kwargs = base.metadata.architecture, base.metadata.model_kwargs
    else:
        architecture, model_kwargs = config.architecture, dict(config.model_kwargs)
        mean, std = band_statistics(prepared_train)
        model = None
    metadata = BundleMetadata(
        architecture=architecture, model_kwargs=model_kwargs, bands=BANDS, norm_mean=mean, norm_std=std,
        gsd_m=config.gsd_m, tile_size=config.tile_size * 2, data_version=catalog.version,
    )
    if model is None:
        model = build_model(metadata)
    model = runtime.prepare(model)

    dataset = TileSampleDataset(prepared_train, config.tile_size, mean, std, default_augmentation())
    weights = sampling_weights(prepared_train, config.tile_size)
    steps_per_epoch = config.steps_per_epoch or max(1, int(sum(weights)) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=max(total_steps, 2), pct_start=0.15
    )
    state = {"epoch": 0, "step": 0, "best_score": -math.inf, "best_metrics": {}, "bad_epochs": 0}
    checkpoint_path = out / LAST_CHECKPOINT
    if config.resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
        log.info("resumed from %s at epoch %d, step %d", checkpoint_path, state["epoch"], state["step"])

    mix_generator = torch.Generator().manual_seed(config.seed + 1)
    metrics_path = out / "metrics.csv"
    while state["epoch"] < config.epochs and state["step"] < total_steps and state["bad_epochs"] < config.patience:
        epoch = state["epoch"]
        sampler = WeightedRandomSampler(
            weights, steps_per_epoch * config.batch_size, replacement=True,
            generator=torch.Generator().manual_seed(config.seed * 1000 + epoch),
        )
        loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True,
                            num_workers=config.workers, persistent_workers=False)
        model.train()
        sums: dict[str, float] = {"loss": 0.0, "tile_loss": 0.0, "pixel_loss": 0.0}
        seen = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        for batch in bar:
            if torch.rand(1, generator=mix_generator).item() < config.mixup_rate:
                batch = mixup(batch, mix_generator)
            batch = {k: v.to(runtime.device) for k, v in batch.items()}
            with runtime.autocast():
                output = model(runtime.to_input(batch["image"]))
            loss, parts = detection_loss(output, batch, config.pixel_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            seen += 1
            sums["loss"] += float(loss.detach())
            for k, v in parts.items():
                sums[k] += v
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}")
            if state["step"] >= total_steps:
                break
        state["epoch"] += 1
        val = evaluate_prepared(model, prepared_val, mean, std, runtime) if prepared_val else {}
        score = selection_score(val)
        row = {"epoch": state["epoch"], "step": state["step"], "lr": scheduler.get_last_lr()[0],
               **{k: v / max(seen, 1) for k, v in sums.items()}, **val, "score": score}
        _append_csv(metrics_path, row)
        log.info("epoch %d: %s", state["epoch"], {k: round(v, 4) for k, v in row.items()})
        if score > state["best_score"] or not prepared_val:
            state.update(best_score=score, best_metrics=val, bad_epochs=0)
            metadata.metrics = {"validation": val, "epoch": state["epoch"], "step": state["step"]}
            save_bundle(out / BEST_BUNDLE, model, metadata)
        else:
            state["bad_epochs"] += 1
        _save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(), "state": state,
        })
    return state


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
