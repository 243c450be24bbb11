"""What can be checked of the Dockerfile without a Docker engine."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", DOCKERFILE, re.MULTILINE)]


def test_every_copied_path_exists():
    sources = []
    for args in instructions("COPY"):
        if args.startswith("--from"):
            continue
        *srcs, _ = shlex.split(args)
        sources += srcs
    assert sources, "the Dockerfile copies nothing from the build context"
    assert [s for s in sources if not (ROOT / s).exists()] == []


def test_multi_stage_with_cuda_switch_and_non_root_user():
    stages = instructions("FROM")
    assert len(stages) >= 2
    assert "ARG BASE_IMAGE=" in DOCKERFILE and "ARG TORCH_VARIANT=cpu" in DOCKERFILE
    users = instructions("USER")
    assert users and users[-1] not in {"root", "0"}
    assert "torch==2.14.1" in DOCKERFILE and "torchvision==0.29.1" in DOCKERFILE


def test_entrypoint_and_default_command_are_real_cli_commands():
    entry = instructions("ENTRYPOINT")[-1]
    assert entry == '["solarscan"]'
    command = [a.strip('" ') for a in instructions("CMD")[-1].strip("[]").split(",")]
    result = CliRunner().invoke(cli, command + (["--help"] if command[0] != "--help" else []))
    assert result.exit_code == 0, result.output
