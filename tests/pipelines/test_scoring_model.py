"""Scoring through the real PanelNet detector (Res2NetPlus50), made deterministic by fixing its output layers."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import torch
from fixtures.predictors import fp32_predictor
from fixtures.scenes import write_scene

import models
from pipelines.predictors import ModelPredictor
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions


@pytest.fixture(scope="module")
def detector() -> models.PanelNet:
    torch.manual_seed(0)
    return models.create_model("panelnet_res2netplus50").eval()


def _predictor(
    detector: models.PanelNet, tile_logit: float, pixel_logit: float, gate: bool
) -> ModelPredictor:
    """The detector with its last layers fixed: every tile and pixel gets the given logits."""
    with torch.no_grad():
        for layer, logit in ((detector.classifier[-1], tile_logit), (detector.decoder.logit, pixel_logit)):
            layer.weight.zero_()
            layer.bias.fill_(logit)
    return fp32_predictor(detector, gate=gate)


def test_real_model_polygon_covers_exactly_the_valid_ground(tmp_path, detector):
    # A sure 'panel everywhere' model: the valid part of the scene (left of the nodata block) is one polygon.
    spec = write_scene(
        tmp_path / "scene.tif", width=100, height=70, panels=[], nodata=0, nodata_box=(0, 60, 70, 100)
    )
    summary = score(
        [spec.path],
        tmp_path / "panels.geojson",
        ScoreOptions(progress=False),
        _predictor(detector, 8.0, 8.0, gate=True),
    )
    found = gpd.read_file(tmp_path / "panels.geojson")
    assert summary.exit_code == 0 and len(found) == 1
    valid = shapely.box(*(spec.transform @ (0, 70)), *(spec.transform @ (60, 0)))
    assert shapely.hausdorff_distance(found.to_crs(spec.crs).geometry.iloc[0], valid) <= spec.gsd
    assert found["area_m2"].iloc[0] == pytest.approx(60 * 70 * 0.25, rel=1e-3)
    assert found["confidence"].iloc[0] == pytest.approx(torch.sigmoid(torch.tensor(8.0)).item(), abs=0.01)
    assert found["model"].iloc[0].startswith("panelnet_res2netplus50")


def test_classifier_gates_the_decoder(tmp_path, detector):
    batch = np.zeros((2, 3, 64, 64), np.float32)
    gated = _predictor(detector, -8.0, 8.0, gate=True).predict(batch)
    assert not gated.segmented.any() and gated.pixel_probability.max() == 0.0
    assert gated.tile_probability.max() < 0.01

    ungated = _predictor(detector, -8.0, 8.0, gate=False).predict(batch)
    assert ungated.segmented.all() and ungated.pixel_probability.min() > 0.99

    spec = write_scene(tmp_path / "scene.tif", width=60, height=60, panels=[])
    options = ScoreOptions(progress=False, tiles_csv=tmp_path / "tiles.csv")
    assert (
        score(
            [spec.path], tmp_path / "gated.geojson", options, _predictor(detector, -8.0, 8.0, gate=True)
        ).panels
        == 0
    )
    assert (
        score(
            [spec.path], tmp_path / "ungated.geojson", options, _predictor(detector, -8.0, 8.0, gate=False)
        ).panels
        == 1
    )
    assert (tmp_path / "tiles.csv").read_text().splitlines()[1].endswith(",false")


def test_the_gate_keeps_only_the_cells_whose_windows_pass(detector, monkeypatch):
    """Dense presence vetoes the decoder cell by cell: a panel-like roof far from any passing window is no panel."""
    from pipelines import predictors

    def corner_only(model, features, window):
        logits = torch.full((features[-1].shape[0], *features[-1].shape[-2:]), -8.0)
        logits[:, :2, :3] = 8.0  # cells of 32 px: rows 0-63 and columns 0-95 pass
        return logits

    monkeypatch.setattr(predictors, "presence_logits", corner_only)
    batch = np.zeros((1, 3, 256, 256), np.float32)
    gated = _predictor(detector, 0.0, 8.0, gate=True).predict(batch)
    assert gated.segmented.all() and gated.tile_probability[0] > 0.99
    panel = gated.pixel_probability[0] > 0.5
    assert panel[:64, :96].all() and not panel[64:].any() and not panel[:, 96:].any()
    ungated = _predictor(detector, 0.0, 8.0, gate=False).predict(batch)
    assert (ungated.pixel_probability[0] > 0.5).all()
