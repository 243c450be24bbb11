"""The ``solarscan`` command line: turns arguments into pipeline calls.

Sub-commands live in their own modules and import the heavy libraries (torch, rasterio) only when run,
so ``solarscan --help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.catalog_cmd import catalog_app
from app.demo_cmd import demo
from app.score_cmd import score
from app.serve_cmd import serve
from app.train_cmd import calibrate, evaluate, train

cli = typer.Typer(
    name="solarscan",
    help="Find solar panels in overhead imagery and export georeferenced panel polygons.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

cli.add_typer(catalog_app, name="catalog", help="Record, validate and import labelled imagery (STAC catalog).")
cli.command("score")(score)
cli.command("demo")(demo)
cli.command("train")(train)
cli.command("evaluate")(evaluate)
cli.command("calibrate")(calibrate)
cli.command("serve")(serve)


@cli.command("info")
def info(bundle: Annotated[Path, typer.Argument(help="Model bundle (.safetensors) to describe.")]) -> None:
    """Print the metadata of a model bundle (architecture, bands, normalisation, metrics)."""
    from models import ModelError, read_metadata

    try:
        metadata = read_metadata(bundle)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(json.loads(metadata.to_json()), indent=2))


def main() -> None:
    """Console-script entry point."""
    cli()
