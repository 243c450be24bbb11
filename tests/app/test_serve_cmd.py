"""``solarscan serve`` start-up checks and the API key's origin."""

from __future__ import annotations

import stat

from typer.testing import CliRunner

from app.cli import cli
from app.server.auth import ENV_VAR, resolve_api_key
from app.server.storage import DataDir


def test_a_missing_model_stops_the_server_before_it_starts(tmp_path):
    result = CliRunner().invoke(
        cli, ["serve", "--data-dir", str(tmp_path / "data"), "--model", str(tmp_path / "nope.safetensors")]
    )
    assert result.exit_code == 2 and "nope.safetensors" in result.output and "not found" in result.output


def test_a_short_api_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "short")
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "at least 16 characters" in result.output


def test_generated_key_is_stored_privately_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    data = DataDir(tmp_path / "data")
    key, generated = resolve_api_key(data)
    assert generated and len(key) >= 32
    assert stat.S_IMODE(data.api_key.stat().st_mode) == 0o600
    assert resolve_api_key(data) == (key, False)
    monkeypatch.setenv(ENV_VAR, "from-the-environment-0123")
    assert resolve_api_key(data) == ("from-the-environment-0123", False)
