"""Long jobs check that their result folders can be written before they start, and say which folder and why."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from app.cli import cli
from pipelines.evaluation.calibration import calibrate
from pipelines.folders import check_writable_folder
from pipelines.training.loop import TrainConfig, train


@pytest.fixture
def blocker(tmp_path):
    """A file where a folder is wanted."""
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _is_a_file(blocker, what: str) -> str:
    return f"^{re.escape(str(blocker))}: is a file, not a folder, so {re.escape(what)} cannot be written in it"


def test_a_folder_is_created_and_a_file_in_its_place_is_refused(tmp_path, blocker):
    check_writable_folder(tmp_path / "new" / "deeper", "results")
    assert (tmp_path / "new" / "deeper").is_dir() and not any((tmp_path / "new" / "deeper").iterdir())
    with pytest.raises(ValueError, match=_is_a_file(blocker, "results")):
        check_writable_folder(blocker, "results")
    with pytest.raises(ValueError, match=f"^{re.escape(str(blocker / 'sub'))}: cannot write results there"):
        check_writable_folder(blocker / "sub", "results")


def test_training_refuses_a_run_folder_it_cannot_write_before_reading_the_catalog(tmp_path, blocker):
    config = TrainConfig(catalog=tmp_path / "no-catalog", out=blocker, device="cpu")
    with pytest.raises(ValueError, match=_is_a_file(blocker, "the training run (--out)")):
        train(config, progress=False)


def test_calibration_refuses_an_output_folder_it_cannot_write_before_predicting(tmp_path, blocker):
    with pytest.raises(ValueError, match=_is_a_file(blocker, "the calibrated bundle (--out)")):
        calibrate(tmp_path / "no-catalog", tmp_path / "no-bundle.safetensors", out=blocker / "b.safetensors")


def test_evaluate_refuses_a_json_folder_it_cannot_write_before_evaluating(tmp_path, blocker):
    result = CliRunner().invoke(cli, ["evaluate", "--catalog", str(tmp_path / "no-catalog"), "--model",
                                      str(tmp_path / "no-bundle.safetensors"), "--json", str(blocker / "r.json")])
    assert result.exit_code == 2
    assert f"error: {blocker}: is a file, not a folder, so the report (--json)" in result.output
