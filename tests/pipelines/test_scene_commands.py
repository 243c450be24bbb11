"""``solarscan evaluate --scenes`` and ``solarscan calibrate --scenes`` on the seeded tiny catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.training_catalog import write_training_catalog
from typer.testing import CliRunner

from app.cli import cli
from models import BundleMetadata, build_model, load_bundle, read_metadata, save_bundle
from pipelines.evaluation import scenes as scene_evaluation
from pipelines.evaluation.scene_calibration import GATE_CANDIDATES, PRESENCE_CANDIDATES

CPU = ["--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return write_training_catalog(tmp_path_factory.mktemp("chips")).directory


@pytest.fixture(autouse=True)
def small_mosaics(monkeypatch):
    monkeypatch.setattr(scene_evaluation, "MOSAIC_CELLS", 5)  # 5 x 5 chips: a 2 % share still places one


def _tiny_bundle(path: Path) -> Path:
    torch.manual_seed(0)
    metadata = BundleMetadata(architecture="panelnet", model_kwargs={"encoder": "res2net_tiny"},
                              bands=["red", "green", "blue"], norm_mean=[0.4] * 3, norm_std=[0.2] * 3,
                              gsd_m=0.5, tile_size=32, thresholds={"tile": 0.5, "pixel": 0.5})
    return save_bundle(path, build_model(metadata), metadata, dtype=torch.float16)


def test_evaluate_scenes_reports_mosaic_and_scene_metrics(catalog, tmp_path):
    bundle = _tiny_bundle(tmp_path / "m.safetensors")
    report = tmp_path / "scenes.json"
    result = CliRunner().invoke(cli, ["evaluate", "--catalog", str(catalog), "--model", str(bundle), "--split", "val",
                                      "--scenes", "--no-gate", "--json", str(report), *CPU])
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())["metrics"]
    assert {"fixture/mosaic02_cell_recall", "fixture/mosaic10_cell_precision",
            "fixture/mosaic00_false_panels_per_km2", "fixture/scene_object_recall",
            "fixture/scene_pixel_iou"} <= set(metrics)
    assert "mosaic02_cell_recall" in result.output


def test_calibrate_scenes_writes_pixel_and_gate_thresholds(catalog, tmp_path):
    bundle = _tiny_bundle(tmp_path / "m.safetensors")
    before = load_bundle(bundle).model.state_dict()
    out = tmp_path / "calibrated.safetensors"
    result = CliRunner().invoke(cli, ["calibrate", "--catalog", str(catalog), "--model", str(bundle), "--scenes",
                                      "--out", str(out), *CPU])
    assert result.exit_code == 0, result.output
    calibrated = read_metadata(out)
    record = calibrated.metrics["calibration_scenes"]
    assert record["split"] == "val" and record["scenes"] > 0
    assert calibrated.thresholds["pixel"] == record["thresholds"]["pixel"]
    assert calibrated.thresholds["gate"] in (0.0, *GATE_CANDIDATES)
    by_presence = record["scores"]["objective_by_presence"]
    assert list(by_presence) == [f"{p:.2f}" for p in PRESENCE_CANDIDATES]
    chosen = calibrated.thresholds["presence"]
    assert by_presence[f"{chosen:.2f}"] == max(by_presence.values())  # the best least presence (NaN-free here)
    assert calibrated.thresholds["tile"] == 0.5  # the tile threshold is left to chip calibration
    after = load_bundle(out).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    both = CliRunner().invoke(cli, ["calibrate", "--catalog", str(catalog), "--model", str(bundle), "--scenes",
                                    "--tune-pixel"])
    assert both.exit_code == 2 and "--scenes chooses the pixel threshold itself" in both.output
