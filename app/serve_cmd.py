"""``solarscan serve``: the HTTP API and web map, scoring uploads in the background.

The API key comes from ``SOLARSCAN_API_KEY``, else from ``<data-dir>/api-key``, else it is generated, stored
there (mode 0600) and printed once. A ``--model`` that does not exist stops the server before it starts; without
``--model`` the server starts even when the shipped model is not installed, and its jobs fail saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    data_dir: Annotated[
        Path, typer.Option(help="Where jobs, uploads, results and the API key are kept.")
    ] = Path("solarscan-data"),
    model: Annotated[
        Path | None, typer.Option(help="Model bundle (.safetensors); default: the shipped model.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Jobs scored at the same time.")] = 1,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Largest upload request, MiB.")] = 2048,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest image accepted, width x height in pixels.")
    ] = 2_000_000_000,
    tta: Annotated[
        bool, typer.Option("--tta/--no-tta", help="Score jobs with test-time augmentation (see solarscan score --tta).")
    ] = False,
) -> None:
    """Serve the scoring API and web map."""
    import uvicorn

    from app.server import ServerConfig, create_app
    from app.server.auth import ENV_VAR, resolve_api_key
    from app.server.storage import DataDir
    from pipelines.predictors import default_bundle_path
    from pipelines.scoring.options import ScoreOptions

    if model is not None and not model.is_file():
        typer.echo(f"error: {model}: model bundle not found; pass --model with an existing bundle", err=True)
        raise typer.Exit(2)
    if model is None and not default_bundle_path().is_file():
        typer.echo(
            f"warning: the shipped model is not installed ({default_bundle_path()}); jobs will fail until it "
            "is, or restart with --model BUNDLE",
            err=True,
        )
    data = DataDir(data_dir)
    try:
        data.create()
        key, generated = resolve_api_key(data)
    except OSError as exc:
        typer.echo(f"error: cannot use data directory {data.root}: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # a key too short, saying where it came from
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if generated:
        typer.echo(f"API key (shown once, stored in {data.api_key}, or set {ENV_VAR}): {key}", err=True)
    try:
        config = ServerConfig(
            data_dir=data.root,
            api_key=key,
            model=model,
            workers=workers,
            max_upload_bytes=max_upload_mb << 20,
            max_pixels=max_pixels,
            score_options=ScoreOptions(progress=False, tta=tta),
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
