"""``solarscan serve`` start-up checks and the API key's origin."""

from __future__ import annotations

import stat

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.server.auth import ENV_VAR, resolve_api_key
from app.server.config import DEFAULT_MAX_PIXELS
from app.server.storage import DataDir


def test_a_missing_model_stops_the_server_before_it_starts(tmp_path):
    result = CliRunner().invoke(
        cli, ["serve", "--data-dir", str(tmp_path / "data"), "--model", str(tmp_path / "nope.safetensors")]
    )
    assert result.exit_code == 2 and "nope.safetensors" in result.output and "not found" in result.output


def test_a_short_api_key_in_the_environment_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "short")
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert (
        f"{ENV_VAR} is 5 characters; use at least 16, or unset it to use the key file "
        f"{DataDir(tmp_path / 'data').api_key}" in result.output
    )


@pytest.mark.parametrize("stored", ["", "\n", "short-key\n"])
def test_a_short_key_file_is_refused_by_name(tmp_path, monkeypatch, stored):
    monkeypatch.delenv(ENV_VAR, raising=False)
    data = DataDir(tmp_path / "data")
    data.create()
    data.api_key.write_text(stored)
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data.root)])
    assert result.exit_code == 2
    expected = f"{data.api_key} holds a key of {len(stored.strip())} characters; delete it to have a new one"
    assert expected + " generated" in result.output
    assert data.api_key.read_text() == stored  # left for the user to delete


@pytest.mark.parametrize(("args", "expected"), [([], DEFAULT_MAX_PIXELS), (["--max-pixels", "1000"], 1000)])
def test_max_pixels_reaches_the_server(tmp_path, monkeypatch, args, expected):
    monkeypatch.setenv(ENV_VAR, "from-the-environment-0123")
    served = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: served.append(app.state.config))
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path / "data"), *args])
    assert result.exit_code == 0, result.output
    assert [config.max_pixels for config in served] == [expected]


def test_generated_key_is_stored_privately_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    data = DataDir(tmp_path / "data")
    key, generated = resolve_api_key(data)
    assert generated and len(key) >= 32
    assert stat.S_IMODE(data.api_key.stat().st_mode) == 0o600
    assert resolve_api_key(data) == (key, False)
    monkeypatch.setenv(ENV_VAR, "from-the-environment-0123")
    assert resolve_api_key(data) == ("from-the-environment-0123", False)
