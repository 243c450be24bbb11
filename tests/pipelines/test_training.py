"""Training end to end on a tiny catalog and a tiny model: CLI run, bundle, score, evaluate, exact resume."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from fixtures.scenes import write_scene
from fixtures.training_catalog import write_training_catalog
from typer.testing import CliRunner

import models
from app.cli import cli
from data_catalog import Catalog
from models import load_bundle
from models.panelnet import PanelOutput
from pipelines.pictures.plots import LOSS_COLUMNS
from pipelines.prepared import prepare_items
from pipelines.training import loop as training
from pipelines.training.data import sampling_weights
from pipelines.training.loop import TrainConfig, detection_loss, train

TINY_MODEL = {"architecture": "panelnet", "model_kwargs": {"encoder": "res2net_tiny", "decoder_channels": 16}}
TINY = {**TINY_MODEL, "tile_size": 32, "gsd_m": 0.5, "batch_size": 4, "lr": 3e-3, "mixup_rate": 0.0,
        "device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory) -> Path:
    return write_training_catalog(tmp_path_factory.mktemp("chips")).directory


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_cli_train_lowers_loss_and_writes_a_bundle_that_score_and_evaluate_use(catalog_dir, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY_MODEL, "steps_per_epoch": 2, "mixup_rate": 0.0}))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--catalog", str(catalog_dir), "--out", str(run), "--config", str(config), "--epochs", "4",
        "--max-steps", "6", "--tile-size", "32", "--gsd", "0.5", "--batch-size", "4", "--lr", "1e-3",
        "--device", "cpu", "--precision", "fp32", "--copy-paste", "0.5",
    ])
    assert result.exit_code == 0, result.output
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == [2, 4, 6]  # --max-steps ends the run within the 4th epoch
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert {"curves.png", "precision_recall.png", "last.pt", "config.json", "best.safetensors"} <= {
        p.name for p in run.iterdir()
    }

    bundle = load_bundle(run / "best.safetensors")
    assert bundle.metadata.data_version == Catalog.open(catalog_dir).version
    assert 0.0 < bundle.metadata.thresholds["tile"] <= 1.0 and bundle.metadata.thresholds["pixel"] == 0.5
    assert "tile_roc_auc" in bundle.metadata.metrics["validation"]
    assert (bundle.metadata.gsd_m, bundle.metadata.tile_size) == (0.5, 64)

    scene = write_scene(tmp_path / "scene.tif", width=80, height=64, panels=[(10, 10, 24, 30)])
    scored = CliRunner().invoke(cli, ["score", str(scene.path), "--out", str(tmp_path / "panels.geojson"),
                                      "--model", str(run / "best.safetensors"), "--device", "cpu"])
    assert scored.exit_code == 0, scored.output
    assert (tmp_path / "panels.geojson").is_file()

    report_path = tmp_path / "report.json"
    evaluated = CliRunner().invoke(cli, ["evaluate", "--catalog", str(catalog_dir), "--model",
                                         str(run / "best.safetensors"), "--json", str(report_path), "--as-scored"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(report_path.read_text())
    assert report["items"] == 4  # the 2021 registry positive is left out
    assert {"tile_f1", "tile_roc_auc", "pixel_iou", "object_f1", "panel_area_relative_error",
            "bern/weak_positive_recall", "scored_pixel_iou", "fixture/scored_panel_area_relative_error",
            "outline_recall"} <= set(report["metrics"])
    assert "object_f1" in evaluated.output and "bern" in evaluated.output


def test_the_curves_plot_every_loss_training_logs():
    batch = {"target": torch.zeros(2), "mask": torch.zeros(2, 1, 8, 8), "weight": torch.ones(2, 1, 8, 8)}
    _, parts = detection_loss(PanelOutput(torch.zeros(2), torch.zeros(2, 1, 8, 8)), batch, 1.0)
    assert {"loss", *parts} <= set(LOSS_COLUMNS)


def test_cli_usage_errors_exit_2(tmp_path):
    missing = CliRunner().invoke(cli, ["train", "--catalog", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "nowhere" in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochz": 3}))
    unknown = CliRunner().invoke(cli, ["train", "--catalog", str(tmp_path), "--out", str(tmp_path),
                                       "--config", str(bad)])
    assert unknown.exit_code == 2 and "epochz" in unknown.output
    no_model = CliRunner().invoke(cli, ["evaluate", "--catalog", str(tmp_path), "--model", str(tmp_path / "m")])
    assert no_model.exit_code == 2


class Interrupted(Exception):
    pass


def test_resume_continues_exactly_where_it_stopped(catalog_dir, tmp_path, monkeypatch):
    config = {**TINY, "catalog": catalog_dir, "epochs": 2, "steps_per_epoch": 1, "mixup_rate": 0.5,
              "copy_paste_rate": 0.5, "ema_decay": 0.9, "bag_loss_weight": 0.5}
    straight = train(TrainConfig.from_dict({**config, "out": tmp_path / "straight"}), progress=False)

    save = training._save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        raise Interrupted

    monkeypatch.setattr(training, "_save_checkpoint", save_then_stop)
    stopped = TrainConfig.from_dict({**config, "out": tmp_path / "stopped"})
    with pytest.raises(Interrupted):
        train(stopped, progress=False)
    monkeypatch.setattr(training, "_save_checkpoint", save)
    assert [r["step"] for r in _rows(tmp_path / "stopped")] == ["1"]

    resumed = train(TrainConfig.from_dict({**config, "out": tmp_path / "stopped", "resume": True}), progress=False)
    assert resumed.state["step"] == straight.state["step"] == 2 and resumed.state["epoch"] == 2
    assert [r["step"] for r in _rows(tmp_path / "stopped")] == ["1", "2"]
    assert _rows(tmp_path / "stopped")[1]["loss"] == _rows(tmp_path / "straight")[1]["loss"]
    assert any(float(r["bag_loss"]) > 0 for r in _rows(tmp_path / "straight"))  # the positive presence chip drawn
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    saved = [torch.load(run / "last.pt", weights_only=True)["ema"] for run in (tmp_path / "straight", tmp_path / "stopped")]
    for name, a in saved[0].items():  # the moving average went on from where it stopped, too
        torch.testing.assert_close(a, saved[1][name], msg=name)


def test_the_scoring_tile_size_can_be_set_and_must_fit_the_model_grid(catalog_dir, tmp_path):
    config = {**TINY, "catalog": catalog_dir, "out": tmp_path / "run", "epochs": 1, "steps_per_epoch": 1}
    run = train(TrainConfig.from_dict({**config, "scoring_tile_size": 32}), progress=False)
    assert load_bundle(run.best_bundle).metadata.tile_size == 32  # not the default a third larger (64)
    with pytest.raises(ValueError, match="scoring_tile_size must be a positive multiple of 32.*got 100"):
        TrainConfig.from_dict({**config, "scoring_tile_size": 100})


def test_fine_tuning_restarts_norm_channels_whose_statistics_overflowed():
    torch.manual_seed(0)
    net = models.create_model("panelnet", encoder="res2net_tiny", decoder_channels=16)
    head = net.decoder.level_heads[0][1]
    head.running_var[3] = float("inf")
    head.running_mean[5] = float("nan")
    before = net.decoder.level_heads[1][1].running_var.clone()
    assert training.reset_broken_norm_statistics(net) == {"decoder.level_heads.0.1": 2}
    assert (head.running_var[3], head.running_mean[5]) == (1.0, 0.0)
    assert torch.isfinite(head.running_var).all() and torch.isfinite(head.running_mean).all()
    assert torch.equal(net.decoder.level_heads[1][1].running_var, before)
    assert training.reset_broken_norm_statistics(net) == {}


def test_the_bundle_holds_the_moving_average_of_the_weights_and_buffers(catalog_dir, tmp_path, monkeypatch):
    config = {**TINY, "catalog": catalog_dir, "out": tmp_path / "run", "epochs": 2, "steps_per_epoch": 1,
              "ema_decay": 0.75}
    checkpoints = []
    save = training._save_checkpoint

    def save_and_keep(path, state):
        checkpoints.append({k: {n: t.clone() for n, t in state[k].items()} for k in ("model", "ema")})
        save(path, state)

    monkeypatch.setattr(training, "_save_checkpoint", save_and_keep)
    result = train(TrainConfig.from_dict(config), progress=False)
    first, second = checkpoints
    assert int(second["ema"]["n_averaged"]) == 2
    moved = 0
    for name, last in second["model"].items():
        averaged = second["ema"][f"module.{name}"]
        if last.is_floating_point():  # the first step is copied, each later one blended in with weight 0.25
            torch.testing.assert_close(averaged, 0.75 * first["model"][name] + 0.25 * last, msg=name)
            moved += not torch.equal(averaged, last)
    assert moved > 0  # the average is not the last weights

    bundle = load_bundle(result.best_bundle)
    best = checkpoints[bundle.metadata.metrics["epoch"] - 1]["ema"]
    for name, saved in bundle.model.state_dict().items():
        torch.testing.assert_close(saved, best[f"module.{name}"].to(saved.dtype), msg=name)


def test_sources_can_be_drawn_more_often_and_unknown_sources_are_named(catalog_dir, tmp_path):
    config = {**TINY, "catalog": catalog_dir, "out": tmp_path / "run", "epochs": 1, "steps_per_epoch": 1}
    prepared = prepare_items(list(Catalog.open(catalog_dir).items("train")), 0.5, 3, crop_size=32)
    prepared[0].item = dataclasses.replace(prepared[0].item, source="bern")
    plain = sampling_weights(prepared, 32)
    weighted = sampling_weights(prepared, 32, {"bern": 3.0})
    assert [w / p for w, p in zip(weighted, plain)] == [3.0] + [1.0] * (len(prepared) - 1)
    with pytest.raises(ValueError, match="source_weights names duke, which no training item comes from "
                                         r"\(training sources: fixture\)"):
        train(TrainConfig.from_dict({**config, "source_weights": {"duke": 2.0}}), progress=False)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainConfig.from_dict({**config, "ema_decay": 1.0})


def test_frozen_norm_statistics_are_kept_while_the_weights_learn(catalog_dir, tmp_path):
    config = {**TINY, "catalog": catalog_dir, "epochs": 1, "steps_per_epoch": 2}
    start = train(TrainConfig.from_dict({**config, "out": tmp_path / "start"}), progress=False)
    before = load_bundle(start.best_bundle).model.state_dict()
    tuned = train(TrainConfig.from_dict({**config, "out": tmp_path / "tuned", "init_from": start.best_bundle,
                                         "freeze_norm_statistics": True}), progress=False)
    after = load_bundle(tuned.best_bundle).model.state_dict()
    statistics = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_every_epoch_can_be_kept_with_its_own_tile_threshold(catalog_dir, tmp_path, monkeypatch):
    config = {**TINY, "catalog": catalog_dir, "out": tmp_path / "run", "epochs": 3, "steps_per_epoch": 1,
              "keep_epochs": True}
    checkpoints = []
    save = training._save_checkpoint

    def save_and_keep(path, state):
        checkpoints.append({n: t.clone() for n, t in state["model"].items()})
        save(path, state)

    monkeypatch.setattr(training, "_save_checkpoint", save_and_keep)
    result = train(TrainConfig.from_dict(config), progress=False)
    for epoch in (1, 2, 3):
        bundle = load_bundle(tmp_path / "run" / training.epoch_bundle_name(epoch))
        assert bundle.metadata.metrics["epoch"] == epoch and 0 <= bundle.metadata.thresholds["tile"] <= 1
        for name, saved in bundle.model.state_dict().items():
            torch.testing.assert_close(saved, checkpoints[epoch - 1][name].to(saved.dtype), msg=name)
    best = load_bundle(result.best_bundle).metadata
    kept = load_bundle(tmp_path / "run" / training.epoch_bundle_name(best.metrics["epoch"])).metadata
    assert best.thresholds == kept.thresholds and best.metrics == kept.metrics


def test_a_run_keeps_only_its_best_epoch_unless_asked(catalog_dir, tmp_path):
    train(TrainConfig.from_dict({**TINY, "catalog": catalog_dir, "out": tmp_path / "run", "epochs": 2,
                                 "steps_per_epoch": 1}), progress=False)
    assert not list((tmp_path / "run").glob("epoch*.safetensors"))


def test_fine_tuning_can_narrow_the_decoder_under_the_bundles_encoder(catalog_dir, tmp_path):
    config = {**TINY, "catalog": catalog_dir, "epochs": 1, "steps_per_epoch": 1}
    start = train(TrainConfig.from_dict({**config, "out": tmp_path / "start"}), progress=False)
    base = load_bundle(start.best_bundle)
    narrow = training.reshaped_model(base, {**base.metadata.model_kwargs, "decoder_channels": 8})
    own, theirs = narrow.state_dict(), base.model.state_dict()
    encoder = [k for k in own if k.startswith("encoder.")]
    assert encoder and all(torch.equal(own[k], theirs[k].to(own[k].dtype)) for k in encoder)
    assert any(own[k].shape != theirs[k].shape for k in own if k.startswith("decoder."))

    tuned = train(TrainConfig.from_dict({**config, "out": tmp_path / "narrow", "init_from": start.best_bundle,
                                         "model_kwargs": {"decoder_channels": 8}, "distill_weight": 1.0}),
                  progress=False)
    bundle = load_bundle(tuned.best_bundle)
    assert bundle.metadata.model_kwargs == {**base.metadata.model_kwargs, "decoder_channels": 8}
    assert bundle.model.state_dict().keys() == narrow.state_dict().keys()
    with pytest.raises(ValueError, match="do not fit"):
        training.reshaped_model(base, {**base.metadata.model_kwargs, "no_such_option": 1})


def test_freeze_encoder_trains_only_the_decoder(catalog_dir, tmp_path):
    config = {**TINY, "catalog": catalog_dir, "epochs": 1, "steps_per_epoch": 2}
    start = train(TrainConfig.from_dict({**config, "out": tmp_path / "start"}), progress=False)
    base = load_bundle(start.best_bundle).model.state_dict()
    tuned = train(TrainConfig.from_dict({**config, "out": tmp_path / "frozen", "init_from": start.best_bundle,
                                         "freeze_encoder": True, "lr": 1e-2}), progress=False)
    after = load_bundle(tuned.best_bundle).model.state_dict()
    kept = [k for k in after if k.startswith(("encoder.", "classifier."))]
    assert any(k.endswith("running_mean") for k in kept)  # BatchNorm statistics are kept too
    assert all(torch.equal(after[k], base[k].to(after[k].dtype)) for k in kept)
    assert any(not torch.equal(after[k], base[k].to(after[k].dtype)) for k in after if k.startswith("decoder."))
    with pytest.raises(ValueError, match="freeze_encoder needs init_from"):
        TrainConfig.from_dict({**config, "out": tmp_path / "fresh", "freeze_encoder": True})


def test_frozen_encoder_runs_once_per_step_for_student_and_teacher(catalog_dir, tmp_path, monkeypatch):
    config = {**TINY, "catalog": catalog_dir, "epochs": 1, "steps_per_epoch": 3}
    start = train(TrainConfig.from_dict({**config, "out": tmp_path / "start"}), progress=False)
    calls = []
    encode = models.PanelNet.encode
    monkeypatch.setattr(models.PanelNet, "encode", lambda self, x: calls.append(self.training) or encode(self, x))

    def encoder_passes(**options) -> tuple[int, int]:
        """(training passes, all passes: validation's too) of a frozen-encoder run with ``options``."""
        calls.clear()
        train(TrainConfig.from_dict({**config, "out": tmp_path / str(len(list(tmp_path.iterdir()))),
                                     "init_from": start.best_bundle, "freeze_encoder": True, **options}),
              progress=False)
        return calls.count(True), len(calls)

    alone = encoder_passes()
    assert alone[0] == 3
    # distilled, the teacher's decoder takes the student's frozen features: no second encoder pass
    assert encoder_passes(distill_weight=1.0) == alone
