"""``solarscan catalog`` commands through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.catalog_cmd import catalog_app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(catalog_app, [str(arg) for arg in args])


def test_init_add_list_validate(data, catalog_dir):
    assert invoke("init", catalog_dir).exit_code == 0
    geo = data.root / "geo"
    added = invoke(
        "add",
        catalog_dir,
        "--images",
        geo / "chip_*[abc].tif",
        "--masks",
        geo / "chip_*_mask.tif",
        "--source",
        "cli",
        "--licence",
        "CC0",
    )
    assert added.exit_code == 0, added.output
    assert "3 added, 0 unchanged, 0 rejected" in added.output
    presence = invoke(
        "add", catalog_dir, "--images", data.root / "plain", "--labels", data.presence_csv, "--gsd", "0.3"
    )
    assert presence.exit_code == 0 and "4 added" in presence.output

    listed = invoke("list", catalog_dir)
    assert listed.exit_code == 0 and "7 items, version " in listed.output
    assert "kind: mask 3, presence 4" in listed.output and "cli 3" in listed.output
    summary = json.loads(invoke("list", catalog_dir, "--json").output)
    assert summary["by_source"] == {"cli": 3, "user": 4} and len(summary["version"]) == 16

    assert invoke("validate", catalog_dir).exit_code == 0
    data.masks["chip_a"].write_bytes(data.masks["chip_c"].read_bytes())
    broken = invoke("validate", catalog_dir)
    assert broken.exit_code == 1 and "cli-chip_a: label file changed" in broken.output


def test_add_reports_rejected_items_and_exits_1(data, catalog_dir):
    invoke("init", catalog_dir)
    result = invoke(
        "add",
        catalog_dir,
        "--images",
        data.chips["chip_b"],
        "--images",
        data.chips["chip_c"],
        "--polygons",
        data.polygons,
    )
    assert result.exit_code == 1
    assert "rejected chip_c.tif: none of the 1 polygons overlaps this image" in result.output


def test_user_errors_exit_2_without_traceback(data, catalog_dir, tmp_path):
    missing = invoke("list", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "run `solarscan catalog init" in missing.output
    assert missing.exception is None or isinstance(missing.exception, SystemExit)
    invoke("init", catalog_dir)
    assert invoke("init", catalog_dir).exit_code == 2
    no_label = invoke("add", catalog_dir, "--images", data.chips["chip_a"])
    assert no_label.exit_code == 2 and "exactly one kind of label" in no_label.output
    bad_only = invoke("import", catalog_dir, "--from", data.root, "--only", "duke,mars")
    assert bad_only.exit_code == 2 and "unknown dataset(s) mars" in bad_only.output
    assert "Traceback" not in no_label.output + bad_only.output + missing.output


@pytest.mark.parametrize("option", ["--images", "--masks"])
def test_a_glob_or_folder_matching_nothing_is_a_bad_parameter(data, catalog_dir, monkeypatch, option):
    invoke("init", catalog_dir)
    monkeypatch.chdir(data.root)  # short values: the error box wraps at 80 columns
    (data.root / "empty").mkdir()
    for value, problem in [("geo/nomatch*.tif", "matches no file"), ("empty", "holds no image")]:
        images = value if option == "--images" else "geo/chip_a.tif"
        result = invoke("add", catalog_dir, "--images", images, "--masks", value)
        assert result.exit_code == 2 and f"{option} {value!r} {problem}" in result.output, result.output
        assert "Traceback" not in result.output


def test_import_command(data, catalog_dir):
    empty = invoke("import", catalog_dir, "--from", data.root)
    assert empty.exit_code == 1 and "no known dataset folder" in empty.output
