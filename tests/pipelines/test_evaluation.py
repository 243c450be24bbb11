"""Evaluation metrics on hand-made predictions with known answers."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures.scenes import DarkBluePredictor
from fixtures.training_catalog import write_training_catalog

from data_catalog import Catalog, LabelledItem
from pipelines.evaluation.chips import format_table, score_items, scored_pixel_metrics
from pipelines.metrics import AreaCounter, ObjectCounter, object_iou, tile_metrics
from pipelines.prepared import PreparedItem


def _square(mask: np.ndarray, r: int, c: int, size: int) -> None:
    mask[r:r + size, c:c + size] = 1


def test_tile_metrics_known_answers():
    scores = tile_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), 0.5)
    assert scores == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "roc_auc": 0.75, "count": 4}


def test_object_iou_matrix():
    truth, predicted = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    _square(truth, 0, 0, 4)  # 16 px
    _square(predicted, 0, 0, 4)
    predicted[0:4, 4] = True  # 20 px: IoU 16/20
    _square(truth, 10, 10, 4)
    _square(predicted, 12, 12, 4)  # overlap 4 px: IoU 4/28
    _square(predicted, 0, 15, 3)  # a false positive
    np.testing.assert_allclose(object_iou(truth, predicted), [[0.8, 0, 0], [0, 0, 4 / 28]])


def test_object_and_area_counters():
    truth, predicted = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    _square(truth, 0, 0, 4)
    _square(predicted, 0, 0, 4)  # matched
    _square(truth, 10, 10, 4)
    _square(predicted, 12, 12, 4)  # IoU 1/7: a miss and a false positive
    _square(predicted, 0, 15, 3)  # a false positive
    objects, area = ObjectCounter(), AreaCounter()
    objects.update(truth, predicted)
    area.update(truth, predicted)
    assert objects.scores() == pytest.approx({"precision": 1 / 3, "recall": 1 / 2, "f1": 2 / 5})
    assert area.relative_error() == pytest.approx(abs(16 + 16 + 9 - 32) / 32)


def _item(name: str, kind: str, has_panels: bool, source: str = "a", **properties) -> LabelledItem:
    return LabelledItem(id=name, image_path=Path(f"{name}.tif"), label_kind=kind, label_path=None,
                        has_panels=has_panels, gsd_m=0.5, crs=None, source=source, licence="CC0", split="test",
                        group=name, shape=(8, 8), bands=("red", "green", "blue"), image_checksum=name,
                        properties=properties)


def test_score_items_per_source_with_weak_positives():
    truth = np.zeros((8, 8), np.uint8)
    _square(truth, 0, 0, 4)
    found = truth.astype(np.float32)  # a perfect pixel prediction
    empty = np.zeros((8, 8), np.uint8)
    image = np.zeros((8, 8, 3), np.float16)
    prepared = [
        PreparedItem(_item("m", "mask", True), image, truth, True),
        PreparedItem(_item("n", "presence", False), image, empty, False),
        PreparedItem(_item("w1", "presence", True, "bern", registry_first_operation="2012-01-01"), image, None, True),
        PreparedItem(_item("w2", "presence", True, "bern", registry_first_operation="2018-01-01"), image, None, True),
    ]
    predictions = [(0.9, found), (0.2, np.zeros((8, 8))), (0.8, np.zeros((8, 8))), (0.3, np.zeros((8, 8)))]
    metrics = score_items(prepared, predictions, tile_threshold=0.5, pixel_threshold=0.5)
    assert metrics["tile_accuracy"] == 0.75 and metrics["tile_recall"] == pytest.approx(2 / 3)
    assert metrics["bern/tile_recall"] == 0.5 and metrics["bern/weak_positive_recall"] == 0.5
    assert metrics["weak_positive_recall"] == 0.5
    assert metrics["pixel_iou"] == 1.0 and metrics["object_f1"] == 1.0 and metrics["panel_area_relative_error"] == 0
    assert "bern/object_f1" not in metrics and metrics["a/object_recall"] == 1.0
    assert metrics["bern/outline_recall"] == 0.0 and math.isnan(metrics["bern/outline_precision"])
    table = format_table({"model": "m.safetensors", "split": "test", "items": 4, "data_version": "v",
                          "metrics": metrics})
    assert "weak_positive_recall" in table and "bern" in table.splitlines()[1]


def test_outlines_count_where_the_gate_passes_and_enough_pixels_reach_the_threshold():
    image, panel = np.zeros((8, 8, 3), np.float16), np.zeros((8, 8), np.float32)
    panel[:2, :3] = 0.9  # 6 pixels over the threshold
    prepared = [PreparedItem(_item(n, "presence", truth), image, None if truth else np.zeros((8, 8), np.uint8), truth)
                for n, truth in (("a", True), ("b", True), ("c", True), ("d", False))]
    # a: outlined; b: its pixels, but the classifier (0.2 < half of 0.5) gates the decoder off; c: no pixels;
    # d: a panel-free tile outlined.
    predictions = [(0.3, panel), (0.2, panel), (0.9, np.zeros((8, 8))), (0.9, panel)]
    metrics = score_items(prepared, predictions, tile_threshold=0.5, pixel_threshold=0.5, outline_min_pixels=6)
    assert metrics["outline_recall"] == pytest.approx(1 / 3) and metrics["outline_precision"] == 0.5
    assert metrics["marked_share_median"] == pytest.approx(6 / 64)  # of the one outlined positive, a
    strict = score_items(prepared, predictions, tile_threshold=0.5, pixel_threshold=0.5, outline_min_pixels=7)
    assert strict["outline_recall"] == 0.0 and math.isnan(strict["outline_precision"])
    assert "marked_share_median" not in strict
    gated = score_items(prepared, predictions, tile_threshold=0.5, pixel_threshold=0.5, outline_min_pixels=6,
                        gate_threshold=0.1)  # a gate chosen on scenes lets b through
    assert gated["outline_recall"] == pytest.approx(2 / 3)


def test_scored_masks_are_judged_on_each_items_own_grid(tmp_path):
    catalog = write_training_catalog(tmp_path / "chips")
    drawn = [i for i in Catalog.open(catalog.directory).items("test") if i.label_kind != "presence"]
    assert len(drawn) == 2 and any(i.has_panels for i in drawn) and not all(i.has_panels for i in drawn)
    metrics = scored_pixel_metrics(drawn, DarkBluePredictor())
    assert metrics["scored_pixel_iou"] == 1.0 and metrics["scored_panel_area_relative_error"] == 0.0
    assert metrics["fixture/scored_pixel_iou"] == 1.0

    class Blind(DarkBluePredictor):
        def predict(self, batch):
            scores = super().predict(batch)
            return dataclasses.replace(scores, pixel_probability=np.zeros_like(scores.pixel_probability))

    blind = scored_pixel_metrics(drawn, Blind())
    assert blind["scored_pixel_iou"] == 0.0 and blind["scored_panel_area_relative_error"] == 1.0
