"""What a run folder allows: new runs only into fresh folders, resumes only of a checkpoint with the same plan and
model settings, the loss scaler carried over, and a best bundle even when validation cannot rank epochs."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from fixtures.training_catalog import write_training_catalog
from typer.testing import CliRunner

from app.cli import cli
from models import load_bundle
from pipelines.training import loop as training
from pipelines.training.loop import TrainConfig, mixup, train

TINY = {"architecture": "panelnet", "model_kwargs": {"encoder": "res2net_tiny", "decoder_channels": 16},
        "tile_size": 32, "gsd_m": 0.5, "batch_size": 4, "lr": 3e-3, "mixup_rate": 0.0, "device": "cpu",
        "precision": "fp32", "epochs": 2, "steps_per_epoch": 1}


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory) -> Path:
    return write_training_catalog(tmp_path_factory.mktemp("chips")).directory


@pytest.fixture(scope="module")
def finished(catalog_dir, tmp_path_factory) -> dict:
    """The options of a finished two-step run, whose folder is ``out``; tests must leave it as it is."""
    config = {**TINY, "catalog": catalog_dir, "out": tmp_path_factory.mktemp("runs") / "done"}
    train(TrainConfig.from_dict(config), progress=False)
    return config


def _rows(run: Path) -> int:
    return len((run / "metrics.csv").read_text().splitlines()) - 1


def test_a_new_run_refuses_a_folder_that_holds_one_and_a_resume_needs_a_checkpoint(finished, tmp_path):
    out = finished["out"]
    with pytest.raises(ValueError, match=r"already holds a training run \(last\.pt, metrics\.csv\); pass --resume"):
        train(TrainConfig.from_dict(finished), progress=False)
    assert _rows(out) == 2  # nothing appended
    cli_run = CliRunner().invoke(cli, ["train", "--catalog", str(finished["catalog"]), "--out", str(out)])
    assert cli_run.exit_code == 2 and f"error: {out} already holds a training run" in cli_run.output
    with pytest.raises(ValueError, match="last.pt not found: nothing to resume; drop --resume"):
        train(TrainConfig.from_dict({**finished, "out": tmp_path / "empty", "resume": True}), progress=False)


@pytest.mark.parametrize(("change", "message"), [
    ({"epochs": 3}, r"planned for 2 steps \(2 epochs, 1 per epoch\), the new options make 3 steps \(3 epochs, 1 "),
    ({"max_steps": 1}, r"planned for 2 steps .* make 1 steps \(2 epochs, 1 per epoch, --max-steps 1\); resume with"),
])
def test_a_resume_with_another_length_is_refused(finished, change, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig.from_dict({**finished, **change, "resume": True}), progress=False)
    assert _rows(finished["out"]) == 2


def test_a_resume_with_other_model_or_optimiser_settings_is_refused_and_keeps_the_config(finished):
    config_json = finished["out"] / "config.json"
    before = config_json.read_text()
    with pytest.raises(ValueError, match=r"other settings: ema_decay None \(now 0\.9\); resume with the settings in"):
        train(TrainConfig.from_dict({**finished, "ema_decay": 0.9, "resume": True}), progress=False)
    kwargs = {"encoder": "res2net_tiny", "decoder_channels": 8}
    with pytest.raises(ValueError, match=r"model_kwargs \{.*'decoder_channels': 16.*\} \(now \{.*: 8.*\}\); lr 0\.003 "
                                         r"\(now 0\.001\)"):
        train(TrainConfig.from_dict({**finished, "model_kwargs": kwargs, "lr": 1e-3, "resume": True}), progress=False)
    assert config_json.read_text() == before


def test_an_unranked_validation_keeps_the_latest_epoch_as_best(catalog_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(training, "selection_score", lambda metrics: -math.inf)  # no ROC AUC, no pixel IoU
    with caplog.at_level(logging.WARNING, logger="pipelines.training.loop"):
        result = train(TrainConfig.from_dict({**TINY, "catalog": catalog_dir, "out": tmp_path / "run"}),
                       progress=False)
    assert load_bundle(result.best_bundle).metadata.metrics["epoch"] == 2
    assert sum("cannot rank epochs" in r.getMessage() for r in caplog.records) == 1


def test_an_fp16_resume_carries_the_loss_scaler_over_and_older_checkpoints_still_resume(catalog_dir, tmp_path,
                                                                                         monkeypatch):
    config = {**TINY, "catalog": catalog_dir, "precision": "fp16"}
    train(TrainConfig.from_dict({**config, "out": tmp_path / "straight"}), progress=False)
    save = training._save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        raise Interrupted

    monkeypatch.setattr(training, "_save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        train(TrainConfig.from_dict({**config, "out": tmp_path / "stopped"}), progress=False)
    monkeypatch.setattr(training, "_save_checkpoint", save)
    shutil.copytree(tmp_path / "stopped", tmp_path / "old")
    train(TrainConfig.from_dict({**config, "out": tmp_path / "stopped", "resume": True}), progress=False)
    straight, resumed = (torch.load(tmp_path / run / "last.pt", weights_only=True)["scaler"]
                         for run in ("straight", "stopped"))
    assert straight["_growth_tracker"] == 2 and resumed == straight

    old = torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    torch.save({k: v for k, v in old.items() if k not in ("scaler", "plan")}, tmp_path / "old" / "last.pt")
    again = train(TrainConfig.from_dict({**config, "out": tmp_path / "old", "resume": True}), progress=False)
    assert again.state["step"] == 2


def test_mixup_draws_only_from_its_generator():
    batch = {"image": torch.rand(4, 3, 8, 8), "mask": torch.rand(4, 1, 8, 8), "target": torch.rand(4),
             "weight": torch.ones(4, 1, 8, 8)}
    torch.manual_seed(0)
    first = mixup(batch, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    untouched = torch.get_rng_state()
    torch.manual_seed(1)
    second = mixup(batch, torch.Generator().manual_seed(1))
    for key, value in first.items():
        torch.testing.assert_close(value, second[key], msg=key)
    torch.manual_seed(0)
    mixup(batch, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), untouched)
