"""``solarscan demo``: score the bundled sample imagery with the bundled model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option(help="Folder for panels.geojson, tiles.csv, masks/ and contact_sheet.png.")] = Path(
        "demo-output"
    ),
    model: Annotated[Path | None, typer.Option(help="Model bundle; the bundled model by default.")] = None,
) -> None:
    """Score the bundled sample chips and draw the detected panels over them."""
    from pipelines.errors import ScoringError
    from pipelines.pictures.demo import run_demo

    try:
        summary = run_demo(out, model)
    except ScoringError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary.report(), err=True)
    typer.echo(f"wrote {out / 'panels.geojson'}, {out / 'tiles.csv'} and {out / 'contact_sheet.png'}")
    raise typer.Exit(summary.exit_code)
