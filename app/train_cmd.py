"""``solarscan train``, ``evaluate`` and ``calibrate``: (re)training a detector on a catalog, judging a bundle and
choosing its thresholds.

Exit codes: 0 done, 2 usage errors (bad options, missing catalog or bundle, unavailable device).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer


def train(
    catalog: Annotated[Path, typer.Option(help="Labelled data catalog (see `solarscan catalog`).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, metrics.csv, plots, best.safetensors.")],
    init_from: Annotated[Path | None, typer.Option(help="Bundle to fine-tune instead of training from scratch.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs to train (default 30).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many optimiser steps.")] = None,
    tile_size: Annotated[int | None, typer.Option(min=32, help="Training crop size in pixels (default 96).")] = None,
    gsd: Annotated[float | None, typer.Option(min=0.01, help="Training ground sample distance, m (default 0.3).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Crops per step and process (default 32).")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Peak one-cycle learning rate (default 2e-3).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default auto).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16 (default auto).")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="DataLoader worker processes (default 0).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    copy_paste: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Rate of pasting real panels onto empty crops (default 0).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="JSON file of training options (e.g. architecture, model_kwargs); flags win.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
) -> None:
    """Train (or fine-tune) a panel detector on a catalog; under torchrun, one process of a multi-GPU job."""
    from data_catalog import CatalogError
    from models import ModelError, json_null_nan
    from pipelines.training.loop import TrainConfig
    from pipelines.training.loop import train as run

    flags = {
        "catalog": catalog, "out": out, "init_from": init_from, "epochs": epochs, "max_steps": max_steps,
        "tile_size": tile_size, "gsd_m": gsd, "batch_size": batch_size, "lr": lr, "device": device,
        "precision": precision, "workers": workers, "seed": seed, "copy_paste_rate": copy_paste,
        "resume": resume or None,
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        values = _read_config(config) if config is not None else {}
        values.update({k: v for k, v in flags.items() if v is not None})
        result = run(TrainConfig.from_dict(values))
    except (CatalogError, ModelError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    best = {k: round(v, 4) for k, v in result.state["best_metrics"].items()}
    typer.echo(f"trained {result.state['step']} steps, {result.state['epoch']} epochs; best: {result.best_bundle}")
    typer.echo(json.dumps(json_null_nan(best), indent=2, allow_nan=False))


def evaluate(
    catalog: Annotated[Path, typer.Option(help="Labelled data catalog.")],
    model: Annotated[Path, typer.Option(help="Model bundle (.safetensors) to evaluate.")],
    split: Annotated[str, typer.Option(help="Catalog split: train, val or test.")] = "test",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
    as_scored: Annotated[bool, typer.Option(
        "--as-scored", help="Also score each item with a drawn label as `solarscan score` does (tiled, blended, "
                            "gated) and judge those masks (scored_pixel_iou, scored_panel_area_relative_error).")] = False,
    tta: Annotated[bool, typer.Option(
        "--tta", help="Judge pixel maps averaged over flips and quarter turns, as `solarscan score --tta` makes "
                      "them, at the bundle's threshold for that.")] = False,
    scenes: Annotated[bool, typer.Option(
        "--scenes", help="Judge whole scenes scored by `solarscan score` instead of lone items: seeded mosaics of "
                         "the split's tiles at 2 % and 10 % panel cells and panel-free (cell recall and precision, "
                         "false panels per km2), and its images with drawn labels (object recall and precision, "
                         "pixel IoU).")] = False,
    no_gate: Annotated[bool, typer.Option(
        "--no-gate", help="With --scenes: run the decoder on every tile, as `solarscan score --no-gate`.")] = False,
) -> None:
    """Tile, pixel, panel-object and area metrics of a bundle on a catalog split, per source."""
    from data_catalog import CatalogError
    from models import ModelError, json_null_nan
    from pipelines.errors import ScoringError
    from pipelines.evaluation.chips import evaluate as run
    from pipelines.evaluation.chips import format_table
    from pipelines.folders import check_writable_folder

    _check_split(split)
    try:
        if json_path is not None:
            check_writable_folder(json_path.resolve().parent, "the report (--json)")
        if scenes:
            report = _evaluate_scenes(catalog, model, split, device, precision, tta, not no_gate)
        else:
            report = run(catalog, model, split, device=device, precision=precision, as_scored=as_scored, tta=tta)
    except (CatalogError, ModelError, ScoringError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_table(report))
    if json_path is not None:
        json_path.write_text(json.dumps(json_null_nan(report), indent=2, allow_nan=False))


def _evaluate_scenes(catalog: Path, model: Path, split: str, device: str, precision: str, tta: bool,
                     gate: bool) -> dict[str, Any]:
    from pipelines.evaluation.scenes import evaluate_scenes
    from pipelines.predictors import load_predictor
    from pipelines.scoring.options import ScoreOptions

    options = ScoreOptions(model=model, device=device, precision=precision, tta=tta, gate=gate)
    return evaluate_scenes(catalog, load_predictor(model, device, precision, gate=gate, tta=tta), split, options)


def calibrate(
    catalog: Annotated[Path, typer.Option(help="Labelled data catalog.")],
    model: Annotated[Path, typer.Option(help="Model bundle (.safetensors) whose thresholds to choose.")],
    split: Annotated[str, typer.Option(help="Catalog split to choose them on (never the one you report).")] = "val",
    tune_pixel: Annotated[bool, typer.Option("--tune-pixel", help="Also choose the pixel threshold (best IoU).")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the calibrated bundle here (default: in place).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
    tta: Annotated[bool, typer.Option(
        "--tta", help="Choose only the pixel threshold for `solarscan score --tta` (maps averaged over flips "
                      "and quarter turns; eight times the model time).")] = False,
    scenes: Annotated[bool, typer.Option(
        "--scenes", help="Choose the pixel and gate thresholds on whole scenes scored by `solarscan score` (as "
                         "`evaluate --scenes` judges them) instead of the tile threshold on lone items.")] = False,
) -> None:
    """Choose a bundle's tile threshold (best accuracy over sources with both classes) on a catalog split, or with
    --scenes its pixel and gate thresholds on whole scenes."""
    from data_catalog import CatalogError
    from models import ModelError, json_null_nan
    from pipelines.errors import ScoringError
    from pipelines.evaluation.calibration import calibrate as run
    from pipelines.evaluation.scene_calibration import calibrate_scenes

    _check_split(split)
    if scenes and (tune_pixel or tta):
        typer.echo("error: --scenes chooses the pixel threshold itself; drop --tune-pixel and --tta", err=True)
        raise typer.Exit(2)
    try:
        if scenes:
            report = calibrate_scenes(catalog, model, split, out, device=device, precision=precision)
        else:
            report = run(catalog, model, split, tune_pixel, out, device=device, precision=precision, tta=tta)
    except (CatalogError, ModelError, ScoringError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(json_null_nan(report), indent=2, allow_nan=False))


def _check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        typer.echo(f"error: unknown split {split!r}; use train, val or test", err=True)
        raise typer.Exit(2)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read training options from {path}: {exc}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: training options must be a JSON object")  # noqa: TRY004 (a usage error)
    return values
