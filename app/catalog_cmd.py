"""``solarscan catalog``: create, fill, inspect and check the labelled-data catalog.

Exit codes: 0 success, 1 some items were rejected or validation found problems, 2 the command could not run
(no catalog, unreadable inputs, bad arguments).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

catalog_app = typer.Typer(
    help="Manage the catalog of labelled imagery used for training and evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
CatalogDir = Annotated[Path, typer.Argument(help="Catalog directory.")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print catalog errors as one line and exit 2 instead of showing a traceback."""
    from data_catalog import CatalogError

    try:
        yield
    except CatalogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _expand(values: list[str], option: str) -> list[Path]:
    """Files named directly, the rasters inside named folders, and matches of glob patterns, in order.

    Raises typer.BadParameter for a folder or pattern of ``option`` that yields no file.
    """
    paths: list[Path] = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                kinds = ", ".join(sorted(RASTER_SUFFIXES))
                raise typer.BadParameter(f"{option} {value!r} holds no image ({kinds})")
        elif glob.has_magic(value):
            found = sorted(Path(match) for match in glob.glob(value))
            if not found:
                raise typer.BadParameter(f"{option} {value!r} matches no file")
        else:
            found = [path]
        paths += found
    return paths


def _print_errors(errors: list[tuple[str, str]]) -> None:
    for name, reason in errors:
        typer.echo(f"  rejected {name}: {reason}", err=True)


@catalog_app.command("init")
def init(directory: CatalogDir) -> None:
    """Create an empty catalog in DIRECTORY."""
    from data_catalog import Catalog

    with _user_errors():
        catalog = Catalog.create(directory)
    typer.echo(f"created an empty catalog in {catalog.directory}")


@catalog_app.command("add")
def add(
    directory: CatalogDir,
    images: Annotated[list[str], typer.Option("--images", help="Image file, folder or glob (repeatable).")],
    masks: Annotated[
        list[str] | None, typer.Option("--masks", help="Mask file, folder or glob (repeatable).")
    ] = None,
    polygons: Annotated[
        Path | None, typer.Option("--polygons", help="GeoJSON FeatureCollection of panels.")
    ] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="CSV with columns file,has_panels.")] = None,
    gsd: Annotated[float | None, typer.Option("--gsd", help="Ground sample distance in metres.")] = None,
    source: Annotated[str, typer.Option("--source", help="Where the data comes from.")] = "user",
    licence: Annotated[
        str, typer.Option("--licence", help="Licence or terms of use of the data.")
    ] = "unknown",
) -> None:
    """Validate labelled images and add the good ones to the catalog in DIRECTORY."""
    from data_catalog import Catalog

    with _user_errors():
        catalog = Catalog.open(directory)
        report = catalog.add(
            _expand(images, "--images"),
            masks=_expand(masks, "--masks") if masks else None,
            polygons=polygons,
            labels_csv=labels,
            gsd=gsd,
            source=source,
            licence=licence,
        )
    typer.echo(f"{len(report.added)} added, {len(report.unchanged)} unchanged, {len(report.errors)} rejected")
    _print_errors(report.errors)
    typer.echo(f"catalog version {catalog.version}")
    if report.errors:
        raise typer.Exit(1)


@catalog_app.command("list")
def list_(
    directory: CatalogDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Show item counts per label kind, split and source, and the catalog version."""
    from data_catalog import Catalog

    with _user_errors():
        catalog = Catalog.open(directory)
    summary = {**catalog.summary(), "version": catalog.version}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{catalog.directory}: {summary['items']} items, version {summary['version']}")
    for title, key in (
        ("kind", "by_kind"),
        ("split", "by_split"),
        ("source", "by_source"),
        ("has panels", "by_has_panels"),
    ):
        counts = ", ".join(f"{name} {count}" for name, count in sorted(summary[key].items()))
        typer.echo(f"  {title}: {counts or '-'}")


@catalog_app.command("validate")
def validate(directory: CatalogDir) -> None:
    """Check that every catalogued file is present and unchanged and labels and splits are consistent."""
    from data_catalog import Catalog

    with _user_errors():
        catalog = Catalog.open(directory)
        problems = catalog.validate()
    for item_id, reason in problems:
        typer.echo(f"{item_id}: {reason}", err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {len(catalog)} items", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {len(catalog)} items, version {catalog.version}")


@catalog_app.command("import")
def import_(
    directory: CatalogDir,
    data_root: Annotated[Path, typer.Option("--from", help="Folder holding the shared datasets.")],
    only: Annotated[
        str | None, typer.Option("--only", help="Comma-separated subset of duke,nrel,bern,bangkok.")
    ] = None,
) -> None:
    """Import the known datasets found under --from into the catalog in DIRECTORY (created if needed)."""
    from data_catalog import Catalog
    from data_catalog.importers import import_shared

    names = [name.strip() for name in only.split(",") if name.strip()] if only else None
    with _user_errors():
        reports = import_shared(data_root, directory, only=names)
        catalog = Catalog.open(directory)
    for name, report in reports.items():
        typer.echo(
            f"{name}: {len(report.added)} added, {len(report.unchanged)} unchanged, {len(report.errors)} rejected"
        )
        _print_errors(report.errors)
    if not reports:
        typer.echo(f"no known dataset folder under {data_root}", err=True)
    typer.echo(f"catalog version {catalog.version}, {len(catalog)} items")
    if any(report.errors for report in reports.values()) or not reports:
        raise typer.Exit(1)
