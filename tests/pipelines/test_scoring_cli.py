"""End to end through the command line and a freshly initialised Res2NetPlus50 detector bundle."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from fixtures.scenes import write_scene
from typer.testing import CliRunner

import models
from app.score_cmd import score
from models import BundleMetadata

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "fresh.safetensors"
    metadata = BundleMetadata(
        architecture="panelnet_res2netplus50",
        model_kwargs={},
        bands=["red", "green", "blue"],
        norm_mean=[0.4, 0.45, 0.35],
        norm_std=[0.2, 0.2, 0.2],
        gsd_m=0.3,
        tile_size=256,
    )
    return models.save_bundle(path, models.create_model("panelnet_res2netplus50"), metadata)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("score")(score)
    app.command("noop")(lambda: None)  # a second command keeps 'score' a sub-command, as in the real CLI
    return app


def test_score_command_end_to_end(tmp_path, bundle):
    (tmp_path / "in").mkdir()
    scene = write_scene(
        tmp_path / "in" / "scene.tif", width=300, height=200, panels=[(50, 50, 80, 120)], gsd=0.3
    )
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "out" / "panels.geojson"
    args = [
        "score",
        str(tmp_path / "in"),
        "--out",
        str(out),
        "--model",
        str(bundle),
        "--tiles-csv",
        str(tmp_path / "tiles.csv"),
        "--masks-dir",
        str(tmp_path / "masks"),
        "--device",
        "cpu",
        "--no-gate",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 1, result.output
    assert "broken.tif" in result.output and "inputs: 2 (scored 1, resumed 0, failed 1)" in result.output
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection"
    assert (tmp_path / "masks" / "scene.tif").is_file()
    assert (tmp_path / "tiles.csv").read_text().splitlines()[1].startswith(f"{scene.path},")

    (tmp_path / "in" / "broken.tif").unlink()
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 0 and "resumed 1" in again.output


def test_usage_errors_exit_2(tmp_path, bundle):
    write_scene(tmp_path / "scene.tif", width=20, height=20, panels=[])
    runner, app = CliRunner(), _app()
    missing_model = runner.invoke(
        app,
        [
            "score",
            str(tmp_path),
            "--out",
            str(tmp_path / "p.geojson"),
            "--model",
            str(tmp_path / "nope.safetensors"),
        ],
    )
    assert missing_model.exit_code == 2 and "nope.safetensors" in missing_model.output
    bad_format = runner.invoke(
        app, ["score", str(tmp_path), "--out", str(tmp_path / "p.shp"), "--model", str(bundle)]
    )
    assert bad_format.exit_code == 2 and "unsupported output format" in bad_format.output
    assert runner.invoke(app, ["score", str(tmp_path)]).exit_code == 2  # --out missing
    score = ["score", str(tmp_path), "--out", str(tmp_path / "p.geojson"), "--model", str(bundle)]
    bad_device = runner.invoke(app, [*score, "--device", "gpu"])
    assert bad_device.exit_code == 2 and "unknown device 'gpu'; use auto, cpu, cuda or cuda:N" in bad_device.output
    if not torch.cuda.is_available():
        no_cuda = runner.invoke(app, [*score, "--device", "cuda:0"])
        assert no_cuda.exit_code == 2 and "--device cuda:0 was asked for but no CUDA device" in no_cuda.output
