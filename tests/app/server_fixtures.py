"""A test server over a temporary data directory, scored by the deterministic stand-in predictor, and helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fixtures.scenes import DarkBluePredictor, SceneSpec, write_scene

from app.server import ServerConfig, create_app
from pipelines.predictors import Predictor

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def make_client(
    data_dir: Path, predictor_factory: Callable[[], Predictor] | None = DarkBluePredictor, **config
):
    """A TestClient (use it as a context manager: that starts and stops the workers) sending the API key."""
    app = create_app(ServerConfig(data_dir=data_dir, api_key=KEY, **config), predictor_factory)
    return TestClient(app, headers=AUTH)


def upload(client: TestClient, *files: tuple[str, bytes]):
    return client.post(
        "/v1/jobs", files=[("files", (name, content, "image/tiff")) for name, content in files]
    )


def wait_for(client: TestClient, job_id: str, states=("done", "failed"), timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job still {job['state']} after {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir):
    with make_client(data_dir) as client:
        yield client


@pytest.fixture
def roof(tmp_path) -> SceneSpec:
    """A 64 x 48 px scene at 0.5 m with one 10 x 20 px panel."""
    return write_scene(tmp_path / "roof.tif", width=64, height=48, panels=[(10, 10, 20, 30)])
