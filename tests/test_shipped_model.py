"""The model that ships with solarscan, on the sample chips that ship with it (none used in training)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from app.cli import cli
from data_catalog.sample import sample_chips
from models import load_bundle
from pipelines.predictors import default_bundle_path


def test_shipped_bundle_loads_with_its_training_record():
    bundle = load_bundle(default_bundle_path(), expected_architecture="panelnet_res2netplus50")
    meta = bundle.metadata
    assert meta.bands == ["red", "green", "blue"] and meta.gsd_m == pytest.approx(0.3)
    assert len(meta.data_version) == 16 and meta.metrics["validation"]["tile_roc_auc"] > 0.9
    assert default_bundle_path().stat().st_size < 60 * 2**20


@pytest.mark.slow
def test_demo_scores_the_sample_and_draws_it(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "tiles.csv").open(newline="") as f:
        answers = {row["path"]: row["has_panels"] == "true" for row in csv.DictReader(f)}
    truth = {str(c.path): c.has_panels for c in sample_chips()}
    assert answers.keys() == truth.keys()
    correct = [path for path in truth if answers[path] == truth[path]]
    assert len(correct) >= 9, f"only {len(correct)} of {len(truth)} sample chips classified correctly"
    panels = json.loads((out / "panels.geojson").read_text())["features"]
    assert panels, "no panel polygons on the georeferenced sample chips"
    for feature in panels:
        props = feature["properties"]
        assert props["source"].endswith(".tif") and props["area_m2"] > 0
        assert 6.9 < props["centroid_lon"] < 7.6 and 46.9 < props["centroid_lat"] < 47.3  # canton of Bern
    assert (out / "contact_sheet.png").stat().st_size > 10_000
