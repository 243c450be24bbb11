"""Fixtures of the data catalog tests; the files come from the seeded generator in ``catalog_fixtures``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from catalog_fixtures import Fixture, write_fixture, write_raster


@pytest.fixture
def data(tmp_path: Path) -> Fixture:
    return write_fixture(tmp_path)


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    return tmp_path / "catalog"


@pytest.fixture
def make_raster() -> Callable[..., Path]:
    return write_raster


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder: $SOLARSCAN_SHARED_DATA or ../shared/data next to the repository."""
    root = Path(
        os.environ.get("SOLARSCAN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
    )
    if not root.is_dir():
        pytest.skip(f"shared datasets folder not found: {root} (set SOLARSCAN_SHARED_DATA)")
    return root
