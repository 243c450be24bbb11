"""The fast inference path gives fp32 eager outputs: folded BatchNorms, the one-exponential Mish, the compiled encoder."""

from __future__ import annotations

import os
import subprocess
import sys

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
from models.fusion import MishAffine, fuse_for_inference, mish
from pipelines import predictors
from pipelines.acceleration import (
    CACHED_MIN_PIXELS,
    COMPILE_MIN_PIXELS,
    compile_pays,
    compiled_encoder,
    encoder_digest,
    package_path,
)
from pipelines.predictors import ModelPredictor
from pipelines.runtime import Runtime
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions


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


def test_only_mish_before_a_batchnorm_becomes_mish_affine():
    torch.manual_seed(2)
    encoder = _trained_like(Res2Net(layers=(1, 1, 1, 1), num_classes=0, deep_stem=True, act_layer=nn.ReLU,
                                    act_before_norm=True), seed=2)
    fused = fuse_for_inference(encoder)
    assert not any(isinstance(m, MishAffine) for m in fused.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) < sum(
        isinstance(m, nn.BatchNorm2d) for m in encoder.modules())  # the conv -> BatchNorm pairs are still folded
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        for f, g in zip(encoder.forward_features(x), fused.forward_features(x)):
            assert _relative_error(g, f) < 1e-4


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


def _tiny_detector(seed: int) -> models.PanelNet:
    torch.manual_seed(seed)
    model = models.create_model("panelnet_res2netplus50")
    model.encoder = Res2Net(
        layers=(1, 1, 1, 1), num_classes=0, deep_stem=True, act_layer=nn.Mish, act_before_norm=True
    )
    return fuse_for_inference(_trained_like(model, seed=seed))


@pytest.mark.slow
def test_compiled_encoder_matches_eager_and_is_kept_for_later_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = _tiny_detector(2)
    example = torch.zeros(3, 3, 64, 64)
    assert not package_path(encoder_digest(model), example).exists()
    encode = compiled_encoder(model, example)
    package = package_path(encoder_digest(model), example)
    assert package.is_file() and package.is_relative_to(tmp_path / "solarscan" / "compiled")
    for n in (3, 2):
        x = torch.randn(n, 3, 64, 64)
        with torch.inference_mode():
            for f, g in zip(model.encode(x), encode(x)):
                assert g.shape == f.shape and _relative_error(g, f) < 1e-4
    with pytest.raises(ValueError, match="batches of 3"), torch.inference_mode():
        encode(torch.randn(4, 3, 64, 64))

    # A later job loads the package instead of compiling; other weights or shapes get their own.
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", lambda *a, **k: pytest.fail("recompiled"))
    again = compiled_encoder(model, example)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        assert all(torch.equal(a, b) for a, b in zip(encode(x), again(x)))
    assert package_path(encoder_digest(model), torch.zeros(4, 3, 64, 64)) != package
    assert package_path(encoder_digest(_tiny_detector(3)), example) != package


def test_a_cached_package_is_used_by_jobs_big_enough_to_pay_for_loading_it():
    bf16 = Runtime(torch.device("cpu"), torch.bfloat16)
    assert CACHED_MIN_PIXELS < COMPILE_MIN_PIXELS
    assert compile_pays("auto", CACHED_MIN_PIXELS, bf16, compiled_before=True)
    assert not compile_pays("auto", CACHED_MIN_PIXELS - 1, bf16, compiled_before=True)  # one chip: eager
    assert not compile_pays("auto", CACHED_MIN_PIXELS, bf16, compiled_before=False)  # compiling costs far more
    assert not compile_pays("auto", 10**9, Runtime(torch.device("cpu"), None), compiled_before=True)
    assert not compile_pays("off", 10**9, bf16, compiled_before=True)


def test_a_failing_compiler_leaves_scoring_to_the_eager_model(monkeypatch, detector, caplog):
    predictor = fp32_predictor(detector, compile="on")

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(predictors, "compiled_encoder", broken)
    predictor.plan(tiles={64: 10}, batch_size=2)
    assert "no C++ compiler" in caplog.text
    assert predictor._encode == predictor.model.encode
    scores = predictor.predict(torch.zeros(2, 3, 64, 64).numpy())
    assert scores.tile_probability.shape == (2,)


def test_the_compiled_encoder_serves_its_own_tile_size_and_other_sizes_run_eager(detector):
    predictor = fp32_predictor(detector, compile="on")
    calls = []

    def compiled(x):
        calls.append(tuple(x.shape[-2:]))
        return predictor.model.encode(x)

    predictor._encode, predictor._encode_shape = compiled, (2, 3, 64, 64)  # as ``plan`` leaves it for 64 px
    predictor.predict(torch.zeros(2, 3, 64, 64).numpy())
    predictor.predict(torch.zeros(1, 3, 64, 64).numpy())
    scores = predictor.predict(torch.zeros(2, 3, 128, 128).numpy())
    predictor.predict(torch.zeros(3, 3, 64, 64).numpy())  # a bigger batch than it was compiled for
    assert calls == [(64, 64)] * 2 and scores.pixel_probability.shape == (2, 128, 128)


def test_a_job_plans_for_the_tile_size_with_the_most_pixels(monkeypatch, detector):
    predictor = fp32_predictor(detector, compile="on")
    shapes = []
    monkeypatch.setattr(predictors, "compiled_encoder", lambda model, example, path: shapes.append(example.shape))
    predictor.plan(tiles={64: 30, 128: 10}, batch_size=4)  # 10 tiles of 128 px hold more pixels than 30 of 64
    assert shapes == [(4, 3, 128, 128)] and predictor._encode_shape == (4, 3, 128, 128)


def test_a_second_job_of_the_same_shape_keeps_the_compiled_encoder(monkeypatch, detector):
    predictor = fp32_predictor(detector, compile="on")
    shapes, digests = [], []
    monkeypatch.setattr(predictors, "compiled_encoder", lambda model, example, path: shapes.append(example.shape))
    monkeypatch.setattr(predictors, "encoder_digest", lambda model: digests.append(1) or "digest")
    for tiles in ({128: 10}, {128: 12}, {128: 3}):
        predictor.plan(tiles=tiles, batch_size=4)
    assert shapes == [(4, 3, 128, 128), (3, 3, 128, 128)] and digests == [1]


def test_scoring_keeps_torchs_cuda_home_warning_from_users(tmp_path):
    """torch's C++ extension module, which the compiler imports, warns of CUDA_HOME on every machine without CUDA."""
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    for imports, warned in (("torch.utils.cpp_extension", True), ("pipelines.scoring.job, torch.utils.cpp_extension", False)):
        run = subprocess.run([sys.executable, "-c", f"import {imports}"], env=env, capture_output=True, text=True,
                             check=True)
        assert ("No CUDA runtime is found" in run.stderr) is warned, run.stderr
