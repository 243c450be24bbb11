"""Checkpoint bundles: round trip, fp16 storage, and a specific error for each bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import models
from models import BundleError, BundleMetadata, BundleNotFoundError, load_bundle, read_metadata, save_bundle

ARCH = "panelnet_res2netplus50"


def metadata(**overrides) -> BundleMetadata:
    values = {"architecture": ARCH, "model_kwargs": {}, "bands": ["red", "green", "blue"],
              "norm_mean": [0.3, 0.3, 0.3], "norm_std": [0.2, 0.2, 0.2], "gsd_m": 0.3, "tile_size": 256,
              "data_version": "abc123", "metrics": {"val": {"tile_roc_auc": 0.9}}}
    values.update(overrides)
    return BundleMetadata(**values)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = models.create_model(ARCH).eval()
    path = save_bundle(tmp_path_factory.mktemp("b") / "model.safetensors", model, metadata())
    return path, model


def test_round_trip_gives_identical_outputs(saved):
    path, model = saved
    bundle = load_bundle(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), bundle.model(x)
    assert torch.equal(a.tile_logit, b.tile_logit) and torch.equal(a.mask_logit, b.mask_logit)
    assert bundle.metadata == metadata()
    assert bundle.metadata.package_version


def test_fp16_storage_is_close_and_half_size(saved, tmp_path):
    path, model = saved
    half = save_bundle(tmp_path / "half.safetensors", model, metadata(), dtype=torch.float16)
    assert half.stat().st_size < 0.55 * path.stat().st_size
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), load_bundle(half).model(x)
    torch.testing.assert_close(b.mask_logit, a.mask_logit, rtol=0.05, atol=0.05)


def test_fp16_storage_keeps_batchnorm_statistics_beyond_fp16_range_and_is_world_readable(tmp_path):
    torch.manual_seed(0)
    model = models.create_model(ARCH).eval()
    norm = model.decoder.level_heads[1][1]
    with torch.no_grad():
        norm.running_var.fill_(5e5)  # seen in a trained decoder; fp16 stops at 65504
    half = save_bundle(tmp_path / "half.safetensors", model, metadata(), dtype=torch.float16)
    tensors = load_file(half)
    assert tensors["decoder.level_heads.1.1.running_var"].dtype == torch.float32
    assert tensors["decoder.level_heads.1.1.weight"].dtype == torch.float16
    loaded = load_bundle(half).model.decoder.level_heads[1][1].running_var
    assert torch.equal(loaded, norm.running_var)
    assert half.stat().st_mode & 0o777 == 0o644


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(BundleNotFoundError, match=f"{missing}: model bundle not found"):
        load_bundle(missing)
    with pytest.raises(FileNotFoundError):
        load_bundle(missing)


def test_truncated_file(saved, tmp_path):
    path, _ = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError, match=f"{cut}: .*(truncated or corrupt)"):
        load_bundle(cut)


def test_other_architecture_is_refused(saved):
    path, _ = saved
    with pytest.raises(BundleError, match="holds a 'panelnet_res2netplus50' model, expected 'panelnet_res2net50'"):
        load_bundle(path, expected_architecture="panelnet_res2net50")


def test_mismatched_shapes_are_listed(tmp_path):
    model = models.create_model(ARCH, in_chans=4)
    path = tmp_path / "bands.safetensors"
    save_bundle(path, model, metadata(bands=["r", "g", "b", "n"], norm_mean=[0.3] * 4, norm_std=[0.2] * 4))
    tensors = {k: v for k, v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(path).items()}
    header = {"solarscan": metadata().to_json()}  # claims 3 bands, weights are for 4
    save_file(tensors, path, metadata=header)
    with pytest.raises(BundleError, match=r"shape mismatches .*encoder\.conv1\.0\.weight: file \(32, 4, 3, 3\) vs model \(32, 3, 3, 3\)"):
        load_bundle(path)


def test_missing_tensors_are_listed(saved, tmp_path):
    _, model = saved
    tensors = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    partial = tmp_path / "partial.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, partial, metadata={"solarscan": metadata().to_json()})
    with pytest.raises(BundleError, match=r"missing tensors \(e\.g\. \['decoder\."):
        load_bundle(partial)


def test_plain_safetensors_is_not_a_bundle(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(BundleError, match="no solarscan metadata"):
        read_metadata(plain)


def test_undefined_metrics_are_stored_as_json_null(tmp_path):
    undefined = metadata(metrics={"validation": {"bern/tile_roc_auc": float("nan"), "tile_accuracy": 0.9}})
    path = save_bundle(tmp_path / "m.safetensors", models.create_model(ARCH), undefined)
    header = json.loads(undefined.to_json(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert header["metrics"]["validation"] == {"bern/tile_roc_auc": None, "tile_accuracy": 0.9}
    assert read_metadata(path).metrics["validation"]["bern/tile_roc_auc"] is None


def _with_header(path: Path, data: dict) -> Path:
    save_file({"w": torch.zeros(2)}, path, metadata={"solarscan": json.dumps(data)})
    return path


def test_unknown_metadata_keys_are_refused(tmp_path):
    path = _with_header(tmp_path / "odd.safetensors", json.loads(metadata().to_json()) | {"colour": "blue"})
    with pytest.raises(BundleError, match=r"metadata has unknown keys \['colour'\]$"):
        read_metadata(path)
    data = json.loads(metadata().to_json())
    del data["gsd_m"]
    with pytest.raises(BundleError, match=r"odd\.safetensors: metadata lacks required keys \['gsd_m'\]$"):
        read_metadata(_with_header(path, data))


def test_a_newer_format_asks_for_an_upgrade_and_a_missing_format_is_named(tmp_path):
    newer = json.loads(metadata().to_json()) | {"format_version": 2, "colour": "blue"}
    with pytest.raises(BundleError, match="bundle format 2 is newer than this solarscan supports .*; upgrade"):
        read_metadata(_with_header(tmp_path / "newer.safetensors", newer))
    unversioned = json.loads(metadata().to_json())
    del unversioned["format_version"]
    with pytest.raises(BundleError, match="metadata has no format_version"):
        read_metadata(_with_header(tmp_path / "unversioned.safetensors", unversioned))


def test_inconsistent_normalisation_is_refused():
    with pytest.raises(BundleError, match="2 means and 3 stds for 3 bands"):
        metadata(norm_mean=[0.1, 0.2])


def test_pickle_file_is_never_unpickled(tmp_path):
    evil = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(1)}, evil)
    with pytest.raises(BundleError, match=f"{evil}: not a readable safetensors bundle"):
        load_bundle(evil)
