"""Schema-driven fuzzing: schemathesis generates requests from the OpenAPI schema; none may end in a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fixtures.scenes import write_scene
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient
from server_fixtures import AUTH, KEY, make_client, upload, wait_for

from app.server import ServerConfig, create_app

schema = schemathesis.openapi.from_dict(
    create_app(ServerConfig(data_dir=Path("unused"), api_key=KEY)).openapi()
)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """An in-process session to a running server (workers started) that already holds one finished job."""
    tmp = tmp_path_factory.mktemp("fuzz")
    scene = write_scene(tmp / "roof.tif", width=64, height=48, panels=[(10, 10, 20, 30)])
    with make_client(tmp / "data") as client:
        wait_for(client, upload(client, ("roof.tif", scene.path.read_bytes())).json()["id"])
        yield ASGIClient(client.app)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case, session):
    for headers in (AUTH, {}):
        case.call_and_validate(
            base_url="http://testserver", session=session, headers=headers, checks=[not_a_server_error]
        )
