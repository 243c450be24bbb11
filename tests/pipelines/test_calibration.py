"""Threshold choice on known predictions, tiled validation of large items, and the calibrate command."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures.training_catalog import write_training_catalog
from torch import nn
from typer.testing import CliRunner

from app.cli import cli
from data_catalog import LabelledItem
from models import BundleMetadata, PanelOutput, build_model, load_bundle, read_metadata, save_bundle
from pipelines.evaluation import chips as evaluation
from pipelines.evaluation.calibration import (
    calibrate,
    calibrate_predictions,
    choose_pixel_threshold,
    choose_tile_threshold,
    two_class_items,
)
from pipelines.evaluation.validation import predict_prepared
from pipelines.prepared import PreparedItem
from pipelines.runtime import Runtime


def _item(name: str, source: str, kind: str = "presence") -> LabelledItem:
    return LabelledItem(id=name, image_path=Path(f"{name}.tif"), label_kind=kind, label_path=None,
                        has_panels=None, gsd_m=0.5, crs=None, source=source, licence="CC0", split="val",
                        group=name, shape=(8, 8), bands=("red", "green", "blue"), image_checksum=name,
                        properties={})


def _prepared(name: str, source: str, has_panels: bool, mask: np.ndarray | None = None,
              size: int = 8) -> PreparedItem:
    kind = "mask" if mask is not None else "presence"
    return PreparedItem(_item(name, source, kind), np.zeros((size, size, 3), np.float16), mask, has_panels)


def test_tile_threshold_is_the_accuracy_optimum_halfway_between_neighbours():
    labels = np.array([0, 0, 1, 0, 1, 1])
    probabilities = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.9])
    threshold, accuracy = choose_tile_threshold(labels, probabilities)
    # Cuts between 0.2 and 0.3 (5 of 6 right) and between 0.4 and 0.6 (5 of 6) tie; of two, the lower is kept.
    assert accuracy == pytest.approx(5 / 6)
    assert threshold == pytest.approx(0.25)
    assert choose_tile_threshold(np.array([0, 1]), np.array([0.2, 0.7])) == (pytest.approx(0.45), 1.0)
    # Three cuts tie at 5 of 7 (between 0.1/0.2, 0.3/0.4 and 0.5/0.6): the middle one.
    threshold, accuracy = choose_tile_threshold(np.array([0, 1, 0, 1, 0, 1, 1]), np.arange(1, 8) / 10)
    assert (threshold, accuracy) == (pytest.approx(0.35), pytest.approx(5 / 7))


def test_tile_threshold_needs_both_classes_and_never_cuts_between_equal_probabilities():
    threshold, accuracy = choose_tile_threshold(np.array([1, 1]), np.array([0.1, 0.2]))
    assert threshold == 0.5 and math.isnan(accuracy)
    # Cutting between the two 0.5s would get all four right; a threshold cannot, so the best is 3 of 4.
    threshold, accuracy = choose_tile_threshold(np.array([0, 1, 1, 0]), np.array([0.5, 0.5, 0.9, 0.1]))
    assert threshold == pytest.approx(0.3) and accuracy == pytest.approx(3 / 4)


def test_positives_only_sources_do_not_vote_on_the_tile_threshold():
    prepared = [
        _prepared("d0", "duke", False), _prepared("d1", "duke", True),
        *(_prepared(f"b{i}", "bern", True) for i in range(5)),
    ]
    assert two_class_items(prepared).tolist() == [True, True, False, False, False, False, False]
    # The registry chips score low: voting, they would drag the threshold under the negative's 0.3.
    predictions = [(0.3, None), (0.8, None), *((0.05, None) for _ in range(5))]
    chosen = calibrate_predictions(prepared, predictions)
    assert chosen["thresholds"] == {"tile": pytest.approx(0.55)}
    assert chosen["scores"] == {"tile_accuracy": 1.0, "tile_items": 2}


def test_pixel_threshold_maximises_iou_over_drawn_labels():
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 1
    probability = np.where(mask == 1, 0.7, 0.0).astype(np.float32)
    probability[4] = 0.4  # a band of background at 0.4: thresholds <= 0.4 take it in
    prepared = [_prepared("m", "nrel", True, mask), _prepared("p", "duke", True)]
    threshold, iou = choose_pixel_threshold(prepared, [probability, np.ones((8, 8), np.float32)])
    assert 0.4 < threshold <= 0.7 and iou == 1.0
    assert choose_pixel_threshold(prepared[1:], [np.ones((8, 8))])[0] == 0.5


def test_without_drawn_panel_pixels_the_pixel_threshold_is_not_tuned(tmp_path, monkeypatch):
    empty = np.zeros((8, 8), np.uint8)
    prepared = [_prepared("m", "nrel", False, empty), _prepared("p", "nrel", True)]
    predictions = [(0.2, np.zeros((8, 8), np.float32)), (0.7, np.zeros((8, 8), np.float32))]
    threshold, iou = choose_pixel_threshold(prepared, [m for _, m in predictions])
    assert threshold == 0.5 and math.isnan(iou)
    bundle = _tiny_bundle(tmp_path / "m.safetensors", {"tile": 0.5, "pixel": 0.3})
    monkeypatch.setattr(evaluation, "predict_split", lambda *args: (prepared, predictions))
    with pytest.raises(ValueError, match="no drawn panel pixels in split 'val' of .*; cannot tune the pixel "
                                         r"threshold \(drop --tune-pixel\)"):
        calibrate(tmp_path / "catalog", bundle, tune_pixel=True)
    assert read_metadata(bundle).thresholds == {"tile": 0.5, "pixel": 0.3}


class _BrightTileNet(nn.Module):
    """PanelNet's interface with the mean brightness of the input as its tile logit (stride-32 cells of mean
    brightness as features), so a small bright spot in a large item is visible to a window but diluted in a mean
    over the whole item."""

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.avg_pool2d(x.mean(dim=1, keepdim=True), 32)]

    def classify(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[-1].mean(dim=(1, 2, 3)) * 40 - 2

    def window_logits(self, features: list[torch.Tensor], window: int) -> torch.Tensor:
        return F.avg_pool2d(features[-1], window, stride=1)[:, 0] * 40 - 2

    def forward(self, x: torch.Tensor, with_mask: bool = True) -> PanelOutput:
        mask = x[:, :1] if with_mask else None
        return PanelOutput(self.classify(self.encode(x)), mask)


def test_validation_takes_the_highest_tile_of_an_item_larger_than_a_scoring_tile():
    image = np.zeros((96, 96, 3), np.float16)
    image[70:78, 70:78] = 1.0  # one small bright spot in the lower right
    prepared = [PreparedItem(_item("big", "nrel"), image, None, True)]
    runtime = Runtime.resolve("cpu", "fp32", channels_last=False)
    whole = predict_prepared(_BrightTileNet(), prepared, [0.0] * 3, [1.0] * 3, runtime)
    tiled = predict_prepared(_BrightTileNet(), prepared, [0.0] * 3, [1.0] * 3, runtime, tile_size=32)
    # whole, the spot fills 64 of 96 x 96 pixels; tiled, presence is judged densely in windows of the bundle's
    # 32 px tile, and the best of them holds the whole spot
    assert whole[0][0] == pytest.approx(torch.sigmoid(torch.tensor(64 / 96**2 * 40 - 2)).item(), rel=1e-4)
    assert tiled[0][0] == pytest.approx(torch.sigmoid(torch.tensor(64 / 32**2 * 40 - 2)).item(), rel=1e-4)
    np.testing.assert_array_equal(tiled[0][1], whole[0][1])  # the pixel map still comes from the whole item
    # a frozen classifier's probabilities, known from an earlier epoch, are taken as they are
    known = predict_prepared(_BrightTileNet(), prepared, [0.0] * 3, [1.0] * 3, runtime, tile_size=32,
                             tile_probabilities=[0.25])
    assert known[0][0] == 0.25
    np.testing.assert_array_equal(known[0][1], whole[0][1])


def _tiny_bundle(path: Path, thresholds: dict[str, float]) -> Path:
    """An untrained tiny detector saved as a bundle with these thresholds."""
    torch.manual_seed(0)
    metadata = BundleMetadata(architecture="panelnet", model_kwargs={"encoder": "res2net_tiny"},
                              bands=["red", "green", "blue"], norm_mean=[0.4] * 3, norm_std=[0.2] * 3,
                              gsd_m=0.5, tile_size=32, thresholds=thresholds)
    return save_bundle(path, build_model(metadata), metadata, dtype=torch.float16)


def test_calibrate_command_writes_thresholds_into_the_bundle(tmp_path):
    catalog = write_training_catalog(tmp_path / "chips").directory
    bundle = _tiny_bundle(tmp_path / "m.safetensors", {"tile": 0.5, "pixel": 0.5})
    before = load_bundle(bundle).model.state_dict()
    out = tmp_path / "calibrated.safetensors"
    result = CliRunner().invoke(cli, ["calibrate", "--catalog", str(catalog), "--model", str(bundle),
                                      "--out", str(out), "--tune-pixel", "--device", "cpu", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    calibrated = read_metadata(out)
    assert calibrated.metrics["calibration"]["split"] == "val"
    assert calibrated.thresholds["tile"] == calibrated.metrics["calibration"]["thresholds"]["tile"]
    assert 0 < calibrated.thresholds["pixel"] < 1
    after = load_bundle(out).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights untouched
    assert read_metadata(bundle).thresholds == {"tile": 0.5, "pixel": 0.5}  # the input bundle too

    bad = CliRunner().invoke(cli, ["calibrate", "--catalog", str(catalog), "--model", str(bundle),
                                   "--split", "holdout"])
    assert bad.exit_code == 2 and "unknown split 'holdout'" in bad.output


def test_calibrate_tta_chooses_only_the_augmented_pixel_threshold(tmp_path):
    catalog = write_training_catalog(tmp_path / "chips").directory
    bundle = _tiny_bundle(tmp_path / "m.safetensors", {"tile": 0.5, "pixel": 0.55})
    out = tmp_path / "calibrated.safetensors"
    result = CliRunner().invoke(cli, ["calibrate", "--catalog", str(catalog), "--model", str(bundle), "--out",
                                      str(out), "--tta", "--device", "cpu", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    calibrated = read_metadata(out)
    record = calibrated.metrics["calibration_tta"]
    assert record["tta"] is True and "calibration" not in calibrated.metrics
    assert set(record["thresholds"]) == {"pixel_tta"} and 0 < calibrated.thresholds["pixel_tta"] < 1
    assert calibrated.thresholds == {"tile": 0.5, "pixel": 0.55, "pixel_tta": record["thresholds"]["pixel_tta"]}
