"""Test-time augmentation: the eight views and their inverses, the predictor's averaged maps and thresholds,
resumed scoring with ``--tta`` and validation's averaged maps (calibration: test_calibration.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.predictors import fp32_predictor
from fixtures.scenes import write_scene

import models
from data_catalog import LabelledItem
from models import BundleMetadata
from pipelines.dihedral import VIEWS, dihedral_mean, unview, view
from pipelines.evaluation.validation import predict_prepared
from pipelines.predictors import pixel_threshold
from pipelines.prepared import PreparedItem
from pipelines.runtime import Runtime
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions


def _numpy_view(a: np.ndarray, k: int) -> np.ndarray:
    """View ``k`` written independently with numpy: a left-right flip for k >= 4, then k % 4 turns."""
    return np.rot90(a[..., ::-1] if k >= 4 else a, k % 4, axes=(-2, -1))


def _numpy_unview(a: np.ndarray, k: int) -> np.ndarray:
    """The inverse of ``_numpy_view``: k % 4 turns back, then the flip undone."""
    a = np.rot90(a, -(k % 4), axes=(-2, -1))
    return a[..., ::-1] if k >= 4 else a


def test_the_eight_views_are_distinct_and_each_inverse_restores_the_image():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = [view(x, k) for k in range(VIEWS)]
    assert len({tuple(v[0, 0].flatten().tolist()) for v in views}) == VIEWS
    for k, v in enumerate(views):
        np.testing.assert_array_equal(v.numpy(), _numpy_view(x.numpy(), k))
        np.testing.assert_array_equal(unview(v, k).numpy(), _numpy_unview(v.numpy(), k))
        assert torch.equal(unview(v, k), x)


def test_the_mean_maps_every_views_prediction_back_before_averaging():
    x = torch.rand(2, 1, 5, 7)  # not square: a quarter turn swaps the axes and the inverse swaps them back

    def predict(t: torch.Tensor) -> torch.Tensor:  # not turn-invariant: depends on the position in the row
        return torch.cumsum(t[:, 0], dim=-1)

    expected = np.mean([_numpy_unview(np.cumsum(_numpy_view(x.numpy(), k)[:, 0], axis=-1), k)
                        for k in range(VIEWS)], axis=0)
    np.testing.assert_allclose(dihedral_mean(x, predict).numpy(), expected, rtol=1e-5)
    assert not np.allclose(expected, predict(x).numpy())  # the views do disagree
    # an equivariant prediction (pixel by pixel) is unchanged by averaging
    np.testing.assert_allclose(dihedral_mean(x, lambda t: torch.sigmoid(t[:, 0])).numpy(),
                               torch.sigmoid(x[:, 0]).numpy(), rtol=1e-6)


@pytest.fixture(scope="module")
def detector() -> models.PanelNet:
    torch.manual_seed(0)
    return models.create_model("panelnet_res2netplus50").eval()


def test_predictor_averages_the_decoders_maps_over_the_views_and_leaves_the_classifier_alone(detector):
    batch = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    plain = fp32_predictor(detector)
    augmented = fp32_predictor(detector, tta=True)
    by_hand = np.mean([_numpy_unview(plain.predict(np.ascontiguousarray(_numpy_view(batch, k))).pixel_probability, k)
                       for k in range(VIEWS)], axis=0)
    scores = augmented.predict(batch)
    np.testing.assert_allclose(scores.pixel_probability, by_hand, atol=1e-5)
    assert not np.allclose(scores.pixel_probability, plain.predict(batch).pixel_probability, atol=1e-3)
    np.testing.assert_array_equal(scores.tile_probability, plain.predict(batch).tile_probability)
    assert augmented.name.endswith(", tta)") and "tta" not in plain.name


def test_predictor_uses_the_bundles_threshold_for_augmented_maps_or_says_it_has_none(detector, caplog):
    calibrated = {"tile": 0.4, "pixel": 0.6, "pixel_tta": 0.45}
    assert fp32_predictor(detector, tta=True, thresholds=calibrated).metadata.thresholds["pixel"] == 0.45
    assert fp32_predictor(detector, thresholds=calibrated).metadata.thresholds["pixel"] == 0.6
    with caplog.at_level(logging.WARNING):
        fallback = fp32_predictor(detector, tta=True, thresholds={"tile": 0.4, "pixel": 0.6})
    assert fallback.metadata.thresholds["pixel"] == 0.6
    assert "no pixel threshold chosen for test-time augmentation" in caplog.text
    assert "solarscan calibrate --tta" in caplog.text
    assert pixel_threshold(BundleMetadata("a", {}, ["red"], [0.5], [0.2], 0.3, 128, calibrated), tta=True) == 0.45


def test_a_batch_scored_with_tta_is_not_resumed_from_a_plain_run(tmp_path, detector):
    spec = write_scene(tmp_path / "scene.tif", width=64, height=64, panels=[])
    out = tmp_path / "panels.geojson"
    first = score([spec.path], out, ScoreOptions(progress=False), fp32_predictor(detector))
    again = score([spec.path], out, ScoreOptions(progress=False), fp32_predictor(detector))
    augmented = score([spec.path], out, ScoreOptions(progress=False, tta=True), fp32_predictor(detector, tta=True))
    assert (first.scored, again.resumed, augmented.scored, augmented.resumed) == (1, 1, 1, 0)


def test_the_other_views_reach_the_model_in_batches_of_the_size_asked_for():
    x = torch.rand(3, 1, 4, 4)
    sizes: list[int] = []

    def predict(t: torch.Tensor) -> torch.Tensor:
        sizes.append(len(t))
        return torch.cumsum(t[:, 0], dim=-1)

    by_three = dihedral_mean(x, predict)
    assert sizes == [3] + [3] * 7  # the tile itself, then the seven other views three at a time
    sizes.clear()
    by_eight = dihedral_mean(x, predict, first=predict(x), batch=8)
    assert sizes == [3, 8, 8, 5]  # 21 stacked views in full batches
    np.testing.assert_allclose(by_eight.numpy(), by_three.numpy(), rtol=1e-6)


def test_validation_averages_the_pixel_maps_of_a_non_square_item_over_its_views(detector):
    item = LabelledItem(id="scene", image_path=Path("scene.tif"), label_kind="mask", label_path=None,
                        has_panels=True, gsd_m=0.5, crs=None, source="s", licence="CC0", split="val", group="g",
                        shape=(64, 96), bands=("red", "green", "blue"), image_checksum="c", properties={})
    image = np.random.default_rng(1).random((64, 96, 3)).astype(np.float16)
    runtime = Runtime.resolve("cpu", "fp32", channels_last=False)

    def plain(k: int) -> tuple[float, np.ndarray]:  # the detector on view k (numpy, on the image's H and W axes)
        turned = np.ascontiguousarray(np.moveaxis(_numpy_view(np.moveaxis(image, -1, 0), k), 0, -1))
        tile, pixels = predict_prepared(detector, [PreparedItem(item, turned, None, True)], [0.5] * 3, [0.25] * 3,
                                        runtime)[0]
        return tile, _numpy_unview(pixels, k)

    (tile, pixels), = predict_prepared(detector, [PreparedItem(item, image, None, True)], [0.5] * 3, [0.25] * 3,
                                       runtime, tta=True)
    np.testing.assert_allclose(pixels, np.mean([plain(k)[1] for k in range(VIEWS)], axis=0), atol=1e-5)
    assert tile == pytest.approx(plain(0)[0], abs=1e-6)  # the tile probability is the item's own


def test_a_compiled_encoder_gets_the_other_views_in_full_batches(detector):
    predictor = fp32_predictor(detector, compile="on", tta=True)
    sizes = []

    def compiled(x):
        sizes.append(len(x))
        return predictor.model.encode(x)

    predictor._encode, predictor._encode_shape = compiled, (4, 3, 64, 64)  # as ``plan`` leaves it for 64 px
    predictor.predict(np.zeros((1, 3, 64, 64), np.float32))
    assert sizes == [1, 4, 3]  # the tile, then its seven other views in batches of the compiled size
