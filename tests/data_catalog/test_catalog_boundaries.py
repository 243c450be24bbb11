"""data_catalog stays free of torch and of the packages above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import data_catalog

FORBIDDEN = {"torch", "torchvision", "models", "pipelines", "app"}
PACKAGE_DIR = Path(data_catalog.__file__).parent


def test_no_forbidden_import_statements():
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & FORBIDDEN, f"{path.name} imports {names}"


def test_importing_everything_loads_no_forbidden_module():
    modules = [f"data_catalog.{p.stem}" for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__"]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE_DIR.parent
    )
    assert result.stdout.strip() == "[]"
