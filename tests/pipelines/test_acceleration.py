"""The fast inference path gives fp32 eager outputs: folded BatchNorms, the one-exponential Mish, the compiled encoder."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely
import torch
import torch.nn.functional as F
from fixtures.predictors import fp32_predictor
from fixtures.scenes import write_scene
from torch import nn

import models
from models import Res2Net
from models.fusion import fuse_for_inference, mish
from pipelines import predictors
from pipelines.acceleration import COMPILE_MIN_PIXELS, compile_pays, compiled_encoder
from pipelines.predictors import ModelPredictor
from pipelines.runtime import Runtime
from pipelines.scoring import ScoreOptions, score


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics far from the identity, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(n, generator=generator) * 0.6 - 0.3)
    return model.eval()


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.fixture(scope="module")
def detector() -> models.PanelNet:
    torch.manual_seed(0)
    return _trained_like(models.create_model("panelnet_res2netplus50"))


def test_mish_with_one_exponential_matches_torch():
    x = torch.cat([torch.linspace(-120, 120, 100_001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 3e38, -3e38])])
    assert torch.allclose(mish(x), F.mish(x), rtol=1e-6, atol=1e-6)
    assert torch.isfinite(mish(x)).all()


@pytest.mark.parametrize("architecture", ["panelnet_res2netplus50", "panelnet_res2net50"])
def test_folding_keeps_both_heads_and_every_feature_map(architecture):
    torch.manual_seed(1)
    model = _trained_like(models.create_model(architecture), seed=1)
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 96, 80)
    with torch.inference_mode():
        expected, actual = model(x), fused(x)
        for f, g in zip(model.encode(x), fused.encode(x)):
            assert _relative_error(g, f) < 1e-4
    assert _relative_error(actual.tile_logit, expected.tile_logit) < 1e-4
    assert _relative_error(actual.mask_logit, expected.mask_logit) < 1e-4
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is left alone


def test_compile_only_for_jobs_and_machines_where_it_pays():
    bf16 = Runtime(torch.device("cpu"), torch.bfloat16)
    fp32 = Runtime(torch.device("cpu"), None)
    assert compile_pays("auto", COMPILE_MIN_PIXELS, bf16) and not compile_pays(
        "auto", COMPILE_MIN_PIXELS - 1, bf16
    )
    assert not compile_pays("auto", 10**9, fp32)  # measured no faster than folded eager on AVX2 fp32
    assert compile_pays("on", 1, fp32) and not compile_pays("off", 10**9, bf16)
    with pytest.raises(ValueError, match="auto, on, off"):
        compile_pays("always", 1, fp32)


def _predictor(detector: models.PanelNet) -> ModelPredictor:
    return fp32_predictor(detector, compile="off")


def test_fast_path_scores_the_same_polygons_as_fp32_eager(tmp_path, detector, monkeypatch):
    spec = write_scene(
        tmp_path / "scene.tif", width=150, height=110, panels=[(20, 30, 50, 90), (70, 100, 100, 140)]
    )
    fast = _predictor(detector)
    monkeypatch.setattr(predictors, "inference_copy", lambda model, dtype: model.eval())
    reference = _predictor(detector)
    assert any(isinstance(m, nn.BatchNorm2d) for m in reference.model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.model.modules())

    found = {}
    for name, predictor in (("reference", reference), ("fast", fast)):
        options = ScoreOptions(progress=False, threshold=0.5, min_area_m2=0)
        score([spec.path], tmp_path / f"{name}.gpkg", options, predictor)
        found[name] = gpd.read_file(tmp_path / f"{name}.gpkg")
    expected, actual = (
        shapely.union_all(found["reference"].geometry),
        shapely.union_all(found["fast"].geometry),
    )
    assert len(found["reference"]) > 0 and not expected.is_empty
    assert abs(len(found["fast"]) - len(found["reference"])) <= 1
    assert shapely.area(shapely.symmetric_difference(actual, expected)) <= 1e-3 * shapely.area(expected)


@pytest.mark.slow
def test_compiled_encoder_matches_eager_for_full_and_short_batches():
    torch.manual_seed(2)
    model = models.create_model("panelnet_res2netplus50")
    model.encoder = Res2Net(
        layers=(1, 1, 1, 1), num_classes=0, deep_stem=True, act_layer=nn.Mish, act_before_norm=True
    )
    model = fuse_for_inference(_trained_like(model, seed=2))
    encode = compiled_encoder(model, batch_size=3)
    for n in (3, 2):
        x = torch.randn(n, 3, 64, 64)
        with torch.inference_mode():
            for f, g in zip(model.encode(x), encode(x)):
                assert g.shape == f.shape and _relative_error(g, f) < 1e-4
    with pytest.raises(ValueError, match="batches of 3"), torch.inference_mode():
        encode(torch.randn(4, 3, 64, 64))
