"""``solarscan score``: batch scoring of rasters into georeferenced panel polygons.

Exit codes: 0 every input scored, 1 some inputs failed (the others are scored and written), 2 usage errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def score(
    inputs: Annotated[list[Path], typer.Argument(help="Raster files and/or folders (searched recursively).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Panel layer to write: .geojson, .gpkg or .parquet.")
    ],
    model: Annotated[
        Path | None, typer.Option(help="Model bundle (.safetensors); default: the shipped model.")
    ] = None,
    tiles_csv: Annotated[
        Path | None, typer.Option(help="Write path,panel_probability,has_panels per image.")
    ] = None,
    masks_dir: Annotated[
        Path | None, typer.Option(help="Write a uint8 panel-probability raster per image into this folder.")
    ] = None,
    gsd: Annotated[
        float | None,
        typer.Option(help="Ground sample distance (m) of inputs without a CRS (plain PNG/JPEG)."),
    ] = None,
    bit_depth: Annotated[
        int | None,
        typer.Option(min=1, max=16, help="Bits of data in integer inputs (e.g. 12 for 12-bit imagery stored as uint16: "
                                         "full brightness at 4095), over what the rasters declare."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
    compile: Annotated[
        str,
        typer.Option(help="Compile the encoder ahead of time (kept in ~/.cache/solarscan): auto (big jobs where it was "
                           "measured to pay, and any job once compiled), on or off."),
    ] = "auto",
    batch_size: Annotated[
        int,
        typer.Option(min=1, help="Tiles per inference batch, counted in classifier windows (a 512 px tile of "
                                 "256 px windows counts as four)."),
    ] = 8,
    threshold: Annotated[
        float | None,
        typer.Option(help="Pixel probability for a panel, in (0, 1]; default: the model's."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Threads reading tiles ahead of inference; default: 0 on a CPU, 2 beside a GPU."),
    ] = None,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="Skip segmenting tiles the classifier calls empty.")
    ] = True,
    tta: Annotated[
        bool,
        typer.Option("--tta/--no-tta", help="Average each segmented tile's panel map over its eight flips and quarter "
                                             "turns: tighter outlines, up to 8x the model time on tiles with panels."),
    ] = False,
    min_area: Annotated[float, typer.Option(min=0.0, help="Drop polygons smaller than this (m2).")] = 1.0,
    min_confidence: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Drop polygons whose mean panel probability is lower; default: the "
                                            "model's (chosen on scenes by `solarscan calibrate --scenes`), else 0."),
    ] = None,
    min_presence: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Drop polygons for which the tile classifier, judging a window centred on "
                                            "each, gives a lower panel probability; 0: do not judge; default: the "
                                            "model's (chosen by `solarscan calibrate --scenes`), else 0."),
    ] = None,
    regularise: Annotated[
        bool,
        typer.Option(
            "--regularise/--no-regularise", help="Square up polygons that fit their rotated rectangle."
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume", help="Skip inputs finished by an earlier run into the same --out."
        ),
    ] = True,
    executor: Annotated[
        str, typer.Option(help="local (this process) or ray (a Ray cluster; pip install 'solarscan\\[ray]').")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join, e.g. auto (the one this node belongs to) or HOST:6379."),
    ] = None,
    num_gpus_per_worker: Annotated[
        float, typer.Option(min=0.0, help="GPUs for each Ray model worker (fractions share a GPU); 0: CPU.")
    ] = 0.0,
) -> None:
    """Find solar panels in rasters and write them as georeferenced polygons."""
    from pipelines.errors import ModelNotFoundError, ScoringConfigError
    from pipelines.scoring.job import score as run
    from pipelines.scoring.options import ScoreOptions

    try:
        options = ScoreOptions(
            model=model,
            tiles_csv=tiles_csv,
            masks_dir=masks_dir,
            gsd_m=gsd,
            bit_depth=bit_depth,
            device=device,
            precision=precision,
            compile=compile,
            batch_size=batch_size,
            workers=workers,
            threshold=threshold,
            gate=gate,
            tta=tta,
            min_area_m2=min_area,
            min_confidence=min_confidence,
            min_presence=min_presence,
            regularise=regularise,
            resume=resume,
            executor=executor,
            ray_address=ray_address,
            num_gpus_per_worker=num_gpus_per_worker,
        )
        summary = run(inputs, out, options)
    except (ScoringConfigError, ModelNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary.report(), err=True)
    raise typer.Exit(summary.exit_code)
