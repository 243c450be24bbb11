"""The import direction of DESIGN.md: app -> pipelines -> {models, data_catalog}; nothing imports app.

Inside pipelines: training -> {evaluation, pictures} -> scoring -> the shared modules at the top of the package
(scenes, tiling, predictors, ...); evaluation and pictures do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "pipelines", "models", "data_catalog")
FORBIDDEN = {
    "models": {"app", "pipelines", "data_catalog"},
    "data_catalog": {"app", "pipelines", "models", "torch", "torchvision"},
    "pipelines": {"app"},
    "app": set(),
}
ROLES = ("scoring", "pictures", "evaluation", "training")
FORBIDDEN_ROLES = {
    "shared": set(ROLES),
    "scoring": {"pictures", "evaluation", "training"},
    "pictures": {"evaluation", "training"},
    "evaluation": {"pictures", "training"},
    "training": set(),
}


def imported_modules(path: Path) -> set[str]:
    """Dotted names ``path`` imports absolutely: ``import a.b`` gives ``a.b``, ``from a import b`` both ``a`` and
    ``a.b`` (``b`` may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def imported_roles(path: Path) -> set[str]:
    """The pipelines role subpackages ``path`` imports (``from pipelines import scoring`` counts too)."""
    parts = [name.split(".") for name in imported_modules(path)]
    return {p[1] for p in parts if p[0] == "pipelines" and len(p) > 1 and p[1] in ROLES}


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_point_one_way(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def role_of(path: Path) -> str:
    part = path.relative_to(ROOT / "pipelines").parts[0]
    return part if part in ROLES else "shared"


def test_pipelines_roles_import_one_way():
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roles(path) & FORBIDDEN_ROLES[role_of(path)])
        for path in (ROOT / "pipelines").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert {p.name for p in (ROOT / "pipelines").iterdir() if p.is_dir() and (p / "__init__.py").is_file()} \
        == set(ROLES)


def test_checker_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom app.cli import main\nfrom . import sibling\n")
    assert imported_packages(sample) == {"os", "app"}


def test_checker_sees_a_role_imported_against_the_direction(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("from pipelines.training.loop import train\nfrom pipelines import evaluation\n"
                      "import pipelines.scenes\n")
    assert imported_roles(sample) == {"training", "evaluation"}


def test_scoring_a_chip_needs_neither_torchvision_nor_the_compiler(tmp_path):
    """Both import torch._dynamo, about a second and a half of every start on a small CPU; scoring needs neither
    until a job compiles (the ResNet-50 comparison encoder imports torchvision when it is built)."""
    import subprocess
    import sys

    code = (
        "import sys, warnings; from pathlib import Path; warnings.simplefilter('ignore'); import app.cli; "
        "from pipelines.scoring.job import score; from pipelines.scoring.options import ScoreOptions; from pipelines.predictors import load_predictor; "
        "s = score([Path('data_catalog/sample/fresno_0001.png')], Path(sys.argv[1]), "
        "ScoreOptions(gsd_m=0.3, resume=False, progress=False), load_predictor(None)); "
        "print(s.scored, sorted(m for m in ('torchvision', 'torch._dynamo', 'torch._inductor') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "panels.geojson")], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1 []"
