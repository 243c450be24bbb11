"""Fixtures of the server tests (defined in ``server_fixtures``)."""

from server_fixtures import client, data_dir, roof  # noqa: F401
