"""Training PanelNet from a labelled catalog: mixed supervision, one-cycle AdamW, resumable, early stopping,
data-parallel under torchrun."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from data_catalog import Catalog
from models import Bundle, BundleError, BundleMetadata, build_model, load_bundle, save_bundle
from pipelines.evaluation.calibration import calibrate_predictions
from pipelines.evaluation.validation import predict_prepared, score_predictions, selection_score
from pipelines.folders import check_writable_folder
from pipelines.pictures.plots import plot_curves, plot_precision_recall
from pipelines.prepared import MIN_PANEL_PIXELS, PreparedItem, has_reliable_label, prepare_items
from pipelines.runtime import Runtime
from pipelines.training.config import TrainConfig
from pipelines.training.copy_paste import CopyPaste, cut_panels
from pipelines.training.data import TileSampleDataset, band_statistics, default_augmentation, sampling_weights
from pipelines.training.distributed import Distributed
from pipelines.training.mosaics import MixedCropDataset, mosaic_dataset

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "detection_loss", "mixup", "train"]

BANDS = ["red", "green", "blue"]
LAST_CHECKPOINT = "last.pt"
BEST_BUNDLE = "best.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CURVES_PLOT = "curves.png"
PRECISION_RECALL_PLOT = "precision_recall.png"
# A bag's panel evidence: the mean of this many top pixel logits (a small array at 0.3 m covers ~100 px), so one
# noisy pixel cannot satisfy the bag and the loss cannot demand that a whole crop be panel.
BAG_TOP_PIXELS = 16
RANK_SEED_STRIDE = 7919  # other processes' random streams start this far apart from rank 0's
# Options a resumed run must share with its start: they shape the saved model and optimiser state (the optimiser's
# saved learning rate and weight decay would silently win over new ones).
RESUME_KEYS = ("architecture", "model_kwargs", "init_from", "ema_decay", "lr", "weight_decay", "freeze_encoder")


@dataclass
class TrainResult:
    """The run's final ``state`` (epoch, step, best score and metrics), the trained model and the best bundle."""

    state: dict[str, Any]
    model: nn.Module
    best_bundle: Path


def scoring_tile_size(crop_size: int) -> int:
    """The tile size scoring should use: a third larger than the training crops, on the model's 32-pixel grid.

    The tile classifier pools over the whole tile and its threshold is tuned on validation images of about the
    crop size, so much larger tiles dilute small panels below it (measured: 96 px crops, 192 px tiles missed 5 of
    10 sample chips; 128 px tiles missed none).
    """
    return -(-crop_size * 4 // 3 // 32) * 32


def reshaped_model(base: Bundle, model_kwargs: dict[str, Any]) -> nn.Module:
    """``base``'s architecture built with ``model_kwargs``, starting from every weight and buffer of ``base`` whose
    name and shape still fit (the encoder, say, under a narrower decoder); the rest starts fresh, as logged."""
    where = base.path or "bundle"
    metadata = dataclasses.replace(base.metadata, model_kwargs=model_kwargs)
    try:
        model = build_model(metadata)
    except BundleError as exc:
        raise ValueError(f"model_kwargs {model_kwargs} do not fit {where}: {exc}") from None
    own, theirs = model.state_dict(), base.model.state_dict()
    fitting = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in fitting})
    log.info("%s with %s: %d of %d tensors start from the bundle; fresh: %s", where, model_kwargs, len(fitting),
             len(own), ", ".join(fresh) or "none")
    return model


def _frozen_modules(net: nn.Module) -> list[nn.Module]:
    """The parts ``freeze_encoder`` keeps as they are: the encoder and the tile classifier."""
    missing = [name for name in ("encoder", "classifier", "decoder") if not isinstance(getattr(net, name, None),
                                                                                       nn.Module)]
    if missing:
        raise ValueError(f"freeze_encoder needs a model with an encoder, a classifier and a decoder; "
                         f"{type(net).__name__} has no {', '.join(missing)}")
    return [net.encoder, net.classifier]


def _same_tensors(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold equal weights and buffers under the same names."""
    ours, theirs = a.state_dict(), b.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in ours.items())


def reset_broken_norm_statistics(model: nn.Module) -> dict[str, int]:
    """Restart the BatchNorm channels whose running mean or variance is not finite (mean 0, variance 1), so
    fine-tuning re-estimates them: the running average of an infinite variance stays infinite, and evaluation
    would keep those channels silent although training (on batch statistics) uses them. Returns the channels
    restarted per layer."""
    restarted = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.BatchNorm2d) and module.track_running_stats:
                broken = ~(torch.isfinite(module.running_mean) & torch.isfinite(module.running_var))
                if broken.any():
                    module.running_mean[broken] = 0.0
                    module.running_var[broken] = 1.0
                    restarted[name] = int(broken.sum())
    return restarted


def mixup(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """MixUp: blend each sample with a shuffled partner; pixel loss only where both masks are known, bags from the
    dominant sample.

    Every draw comes from ``generator`` (torch has no Beta sampler that takes one), so a resumed run mixes alike.
    """
    lam = float(np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator))).beta(0.4, 0.4))
    perm = torch.randperm(batch["image"].shape[0], generator=generator)
    mixed = {k: lam * v + (1 - lam) * v[perm] for k, v in batch.items() if k not in ("weight", "bag")}
    mixed["weight"] = batch["weight"] * batch["weight"][perm]
    if "bag" in batch:  # bag ids cannot be blended: the bags of whichever sample dominates the blend
        mixed["bag"] = batch["bag"] if lam >= 0.5 else batch["bag"][perm]
    return mixed


def detection_loss(output, batch: dict[str, torch.Tensor], pixel_weight: float, bag_weight: float = 0.0,
                   teacher_logits: torch.Tensor | None = None, distill_weight: float = 0.0,
                   ) -> tuple[torch.Tensor, dict]:
    """Tile BCE plus pixel BCE + soft Dice where the pixel label is known, plus, for crops that are bags (labelled
    only as holding panels somewhere), multiple-instance BCE: the mean logit of the bag's ``BAG_TOP_PIXELS`` most
    confident pixels should say panel; plus, given a teacher's pixel logits, BCE towards its probabilities on
    every pixel of every crop but mosaic crops (``mosaic``; weighted by ``distill_weight``)."""
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
    bag = batch.get("bag")
    bag_loss = logits.sum() * 0.0
    if bag_weight > 0 and bag is not None and bool((bag != 0).any()):
        bag_loss = _bag_loss(logits, bag)
    distill = logits.sum() * 0.0
    if distill_weight > 0 and teacher_logits is not None:
        per_sample = F.binary_cross_entropy_with_logits(
            logits, torch.sigmoid(teacher_logits.float()), reduction="none").flatten(1).mean(1)
        # mosaic crops learn from their cell labels alone: the starting model's maps are what they correct
        chips = 1 - batch["mosaic"] if "mosaic" in batch else torch.ones_like(per_sample)
        distill = (per_sample * chips).sum() / chips.sum().clamp_min(1e-6)
    total = tile + pixel_weight * (pixel + bag_weight * bag_loss) + distill_weight * distill
    return total, {"tile_loss": float(tile.detach()), "pixel_loss": float(pixel.detach()),
                   "bag_loss": float(bag_loss.detach()), "distill_loss": float(distill.detach())}


def _bag_loss(logits: torch.Tensor, bag: torch.Tensor) -> torch.Tensor:
    """Multiple-instance BCE over every bag of the batch: ``bag`` holds each pixel's bag id (0: none; a crop may hold
    several, e.g. the cells of a mosaic crop). The mean logit of a bag's ``BAG_TOP_PIXELS`` most confident pixels
    should say panel in a panel bag (id > 0) and background in a panel-free one (id < 0), so that the pixels most
    like a panel in imagery known to hold none are the ones taught otherwise. Panel and panel-free bags are each
    averaged alike, whatever their size, and the two means added."""
    flat_logits, flat_bags = logits.flatten(1), bag.flatten(1).round().long()
    tops: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    for sample, ids in enumerate(flat_bags):
        for bag_id in ids.unique():
            if bag_id != 0:
                inside = flat_logits[sample][ids == bag_id]
                tops[bool(bag_id > 0)].append(inside.topk(min(BAG_TOP_PIXELS, inside.numel())).values.mean())
    loss = logits.sum() * 0.0
    for panel, values in tops.items():
        if values:
            top = torch.stack(values)
            loss = loss + F.binary_cross_entropy_with_logits(top, torch.full_like(top, float(panel)))
    return loss


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _check_run_folder(config: TrainConfig, out: Path) -> None:
    """Refuse a new run into a folder that holds one, a resume without a checkpoint, and a resume with other
    ``RESUME_KEYS`` than the run's ``config.json``."""
    checkpoint = out / LAST_CHECKPOINT
    if not config.resume:
        held = [name for name in (LAST_CHECKPOINT, METRICS_FILE) if (out / name).exists()]
        if held:
            raise ValueError(f"{out} already holds a training run ({', '.join(held)}); pass --resume to continue it "
                             "or choose a new --out")
        return
    if not checkpoint.exists():
        raise ValueError(f"{checkpoint} not found: nothing to resume; drop --resume to start a new run there")
    if not (out / CONFIG_FILE).exists():
        return
    new = json.loads(config.to_json())
    # keys an older run's config.json lacks had their default values then
    old = {**json.loads(TrainConfig(catalog=config.catalog, out=out).to_json()),
           **json.loads((out / CONFIG_FILE).read_text())}
    changed = [f"{key} {old[key]!r} (now {new[key]!r})" for key in RESUME_KEYS if old[key] != new[key]]
    if changed:
        raise ValueError(f"{checkpoint}: the run was started with other settings: {'; '.join(changed)}; resume "
                         f"with the settings in {out / CONFIG_FILE} or start a new --out")


def _describe_plan(plan: dict[str, Any]) -> str:
    capped = "" if plan["max_steps"] is None else f", --max-steps {plan['max_steps']}"
    return f"{plan['total_steps']} steps ({plan['epochs']} epochs, {plan['steps_per_epoch']} per epoch{capped})"


def train(config: TrainConfig, progress: bool | None = None) -> TrainResult:
    """Run (or resume) training, writing into ``config.out``; one process of a data-parallel job under torchrun."""
    distributed = Distributed.from_environment()
    runtime = distributed.start(Runtime.resolve(config.device, config.precision, channels_last=config.channels_last))
    try:
        return _train(config, runtime, distributed, sys.stderr.isatty() if progress is None else progress)
    finally:
        distributed.stop()


def _train(config: TrainConfig, runtime: Runtime, distributed: Distributed, progress: bool) -> TrainResult:
    out = Path(config.out)
    if distributed.is_main:
        check_writable_folder(out, "the training run (--out)")
        _check_run_folder(config, out)
        (out / CONFIG_FILE).write_text(config.to_json())
    rank_seed = config.seed + RANK_SEED_STRIDE * distributed.rank
    torch.manual_seed(rank_seed)

    catalog = Catalog.open(config.catalog)
    train_items = [i for i in catalog.items("train") if has_reliable_label(i, config.weak_positive_max_year)]
    prepared_train = prepare_items(train_items, config.gsd_m, len(BANDS), crop_size=config.tile_size)
    val_items = [i for i in catalog.items("val") if has_reliable_label(i, config.weak_positive_max_year)]
    # all of them, large presence-only images too (judged tile by tile, as calibrate and evaluate judge them)
    prepared_val = prepare_items(val_items, config.gsd_m, len(BANDS))
    if not prepared_train:
        raise ValueError(f"catalog {config.catalog} has no usable training items")

    teacher_model = None
    if config.init_from is not None:
        base = load_bundle(config.init_from)
        model, mean, std = base.model, base.metadata.norm_mean, base.metadata.norm_std
        for name, channels in reset_broken_norm_statistics(model).items():
            log.warning("%s: %d channel(s) of %s had non-finite running statistics; restarted them at mean 0, "
                        "variance 1 (training re-estimates them)", config.init_from, channels, name)
        architecture, model_kwargs = base.metadata.architecture, {**base.metadata.model_kwargs,
                                                                  **config.model_kwargs}
        if model_kwargs != base.metadata.model_kwargs:  # e.g. a lighter decoder under the bundle's encoder
            teacher_model = model
            model = reshaped_model(base, model_kwargs)
    else:
        architecture, model_kwargs = config.architecture, dict(config.model_kwargs)
        mean, std = band_statistics(prepared_train)
        model = None
    metadata = BundleMetadata(
        architecture=architecture, model_kwargs=model_kwargs, bands=BANDS, norm_mean=mean, norm_std=std,
        gsd_m=config.gsd_m, tile_size=config.scoring_tile_size or scoring_tile_size(config.tile_size),
        data_version=catalog.version,
    )
    if model is None:
        model = build_model(metadata)
    teacher = None
    if config.distill_weight > 0:  # the starting bundle's model, frozen, before training changes it
        teacher = runtime.prepare(teacher_model or copy.deepcopy(model)).eval().requires_grad_(False)
    net = runtime.prepare(model)
    frozen = _frozen_modules(net) if config.freeze_encoder else []
    for module in frozen:
        module.requires_grad_(False)

    copy_paste = None
    if config.copy_paste_rate > 0:
        labelled = ((p.image, p.mask) for p in prepared_train if p.mask is not None)
        copy_paste = CopyPaste(cut_panels(labelled, config.tile_size // 2, MIN_PANEL_PIXELS), config.copy_paste_rate)
    dataset = TileSampleDataset(prepared_train, config.tile_size, mean, std, default_augmentation(),
                                copy_paste=copy_paste, bags=config.bag_loss_weight > 0)
    if config.mosaic_rate > 0:
        dataset = MixedCropDataset(dataset, mosaic_dataset(prepared_train, config.tile_size, mean, std),
                                   config.mosaic_rate)
    weights = sampling_weights(prepared_train, config.tile_size, config.source_weights)
    global_batch = config.batch_size * distributed.world_size
    steps_per_epoch = config.steps_per_epoch or max(1, int(sum(weights)) // global_batch)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    plan = {"total_steps": total_steps, "epochs": config.epochs, "steps_per_epoch": steps_per_epoch,
            "max_steps": config.max_steps}
    learning = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(learning, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=max(total_steps, 2), pct_start=0.15
    )
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.autocast_dtype == torch.float16)
    mix_generator = torch.Generator().manual_seed(rank_seed + 1)
    # timm's ModelEmaV3 habit through torch's own helper: buffers (BatchNorm statistics) are averaged too
    ema = None if config.ema_decay is None else AveragedModel(
        net, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    state = {"epoch": 0, "step": 0, "best_score": -math.inf, "best_metrics": {}, "bad_epochs": 0}
    checkpoint_path = out / LAST_CHECKPOINT
    cuda = runtime.device.type == "cuda"
    if config.resume:
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        planned = saved.get("plan", plan)  # checkpoints from before plans were kept are taken on trust
        if planned["total_steps"] != total_steps:
            raise ValueError(
                f"{checkpoint_path}: this run was planned for {_describe_plan(planned)}, the new options make "
                f"{_describe_plan(plan)}; resume with the same --epochs/--max-steps/--batch-size and process count, "
                "or start a new --out")
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):  # empty from a disabled scaler, absent from older checkpoints
            scaler.load_state_dict(saved["scaler"])
        state = saved["state"]
        mix_state = state.pop("mix_rng", None)
        if distributed.is_main:
            torch.set_rng_state(saved["rng"])
            if cuda and "cuda_rng" in saved:
                torch.cuda.set_rng_state(saved["cuda_rng"], runtime.device)
            if mix_state is not None:
                mix_generator.set_state(mix_state)
        else:  # the other processes go on with fresh streams of their own
            torch.manual_seed(rank_seed + state["step"])
            mix_generator.manual_seed(rank_seed + 1 + state["step"])
        log.info("resumed from %s at epoch %d, step %d", checkpoint_path, state["epoch"], state["step"])
    # a frozen encoder that is the teacher's too (the same weights and statistics) runs once for both
    share_encoder = bool(frozen) and teacher is not None and _same_tensors(net.encoder, teacher.encoder)
    frozen_tiles: list[float] | None = None
    model = distributed.wrap(net, runtime)

    while state["epoch"] < config.epochs and state["step"] < total_steps and state["bad_epochs"] < config.patience:
        epoch = state["epoch"]
        draws = WeightedRandomSampler(
            weights, steps_per_epoch * global_batch, replacement=True,
            generator=torch.Generator().manual_seed(config.seed * 1000 + epoch),
        )
        loader = DataLoader(dataset, batch_size=config.batch_size, sampler=distributed.shard(list(draws)),
                            drop_last=True, num_workers=config.workers, persistent_workers=False)
        model.train()
        if config.freeze_norm_statistics:
            for module in net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        for module in frozen:
            module.eval()
        sums: dict[str, float] = {
            "loss": 0.0, "tile_loss": 0.0, "pixel_loss": 0.0, "bag_loss": 0.0, "distill_loss": 0.0,
        }
        seen = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not (progress and distributed.is_main),
                   leave=False)
        for batch in bar:
            if torch.rand(1, generator=mix_generator).item() < config.mixup_rate:
                batch = mixup(batch, mix_generator)
            batch = {k: v.to(runtime.device) for k, v in batch.items()}
            with runtime.autocast():
                image = runtime.to_input(batch["image"])
                shared = None
                if share_encoder:
                    with torch.no_grad():
                        shared = net.encode(image)
                output = model(image, features=shared)
                with torch.no_grad():
                    teacher_logits = None if teacher is None else teacher(image, features=shared).mask_logit
            loss, parts = detection_loss(output, batch, config.pixel_loss_weight, config.bag_loss_weight,
                                         teacher_logits, config.distill_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 2.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(net)
            state["step"] += 1
            seen += 1
            sums["loss"] += float(loss.detach())
            for k, v in parts.items():
                sums[k] += v
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}")
            if state["step"] >= total_steps:
                break
        state["epoch"] += 1
        losses = distributed.mean({k: v / max(seen, 1) for k, v in sums.items()})
        if distributed.is_main:
            row = {"epoch": state["epoch"], "step": state["step"], "lr": scheduler.get_last_lr()[0], **losses}
            tiles = _end_epoch(net if ema is None else ema.module, row, state, metadata, prepared_val, runtime, out,
                               config.keep_epochs, frozen_tiles)
            if frozen:  # the frozen classifier judges every validation item the same in every epoch
                frozen_tiles = tiles
            _save_checkpoint(checkpoint_path, {
                "model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "plan": plan, "rng": torch.get_rng_state(),
                "state": {**state, "mix_rng": mix_generator.get_state()},
                **({"cuda_rng": torch.cuda.get_rng_state(runtime.device)} if cuda else {}),
                **({} if ema is None else {"ema": ema.state_dict()}),
            })
        state = distributed.broadcast(state)
        distributed.barrier()
    return TrainResult(state, net, out / BEST_BUNDLE)


def _end_epoch(net: nn.Module, row: dict[str, Any], state: dict[str, Any], metadata: BundleMetadata,
               prepared_val: list[PreparedItem], runtime: Runtime, out: Path, keep_epoch: bool = False,
               tile_probabilities: list[float] | None = None) -> list[float]:
    """Validate, log the epoch to ``metrics.csv`` and the curves plot, and keep the best model as the bundle,
    with the tile threshold of best validation accuracy (``calibrate_predictions``) and its precision-recall
    plot; with ``keep_epoch``, this epoch's model too (``epoch_bundle_name``). ``tile_probabilities``: the
    validation items' as a frozen classifier gave them before (``predict_prepared``). Returns this epoch's."""
    mean, std = metadata.norm_mean, metadata.norm_std
    predictions = predict_prepared(net, prepared_val, mean, std, runtime, metadata.tile_size,
                                   tile_probabilities=tile_probabilities) if prepared_val else []
    tiles = [tile for tile, _ in predictions]
    val = score_predictions(prepared_val, predictions) if prepared_val else {}
    score = selection_score(val)
    row = {**row, **val, "score": score}
    _append_csv(out / METRICS_FILE, row)
    plot_curves(out / METRICS_FILE, out / CURVES_PLOT)
    log.info("epoch %d: %s", state["epoch"], {k: round(v, 4) for k, v in row.items()})
    if not math.isfinite(score) and state["epoch"] == 1:
        log.warning("validation (%d items) gives neither a tile ROC AUC (it needs both classes) nor a pixel IoU (it "
                    "needs drawn panels), so it cannot rank epochs: %s holds the latest epoch", len(prepared_val),
                    BEST_BUNDLE)
    # while no epoch has had a finite score, each is taken as the best, so that there always is a best bundle
    best = score > state["best_score"] or not math.isfinite(state["best_score"])
    if not best:
        state["bad_epochs"] += 1
    if not (best or keep_epoch):
        return tiles
    chosen = calibrate_predictions(prepared_val, predictions)
    threshold, accuracy = chosen["thresholds"]["tile"], chosen["scores"]["tile_accuracy"]
    epoch_metadata = dataclasses.replace(
        metadata, thresholds={**metadata.thresholds, "tile": threshold},
        metrics={"validation": val, "epoch": state["epoch"], "step": state["step"],
                 "validation_tile_accuracy_at_threshold": accuracy})
    if keep_epoch:
        save_bundle(out / epoch_bundle_name(state["epoch"]), net, epoch_metadata)
    if best:
        state.update(best_score=score, best_metrics=val, bad_epochs=0)
        save_bundle(out / BEST_BUNDLE, net, epoch_metadata)
        if not math.isnan(accuracy):
            labels = np.array([p.has_panels for p in prepared_val], dtype=int)
            plot_precision_recall(labels, np.array(tiles), threshold, out / PRECISION_RECALL_PLOT)
    return tiles


def epoch_bundle_name(epoch: int) -> str:
    """The file an epoch's model is kept in when the run keeps every epoch (``keep_epochs``)."""
    return f"epoch{epoch}.safetensors"


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
