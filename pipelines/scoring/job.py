"""Batch scoring: GeoTIFFs (or plain tiles) in, georeferenced panel polygons, per-image CSV and masks out.

``score`` runs a whole batch (resumable, failures reported per input) on an executor (this process or a Ray
cluster); ``score_scene`` does one scene and can run anywhere the scene file and a predictor are available.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
from tqdm import tqdm

from pipelines.errors import ScoringConfigError, ScoringError
from pipelines.folders import check_writable_folder
from pipelines.predictors import Predictor
from pipelines.scenes import Scene, find_inputs, open_scene, scene_key
from pipelines.scoring.executors import open_executor
from pipelines.scoring.export import atomic_path, check_output_path, combine, write_panels, write_tiles_csv
from pipelines.scoring.manifest import Manifest, SceneRecord, scene_checksum
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.units import SceneResult, gather_scenes, join_units, plan_units, score_unit

STRIP_PIXELS = 1 << 22  # source pixels per vectorising strip (bounds memory for any scene width)
UNIT_TILES = 2048  # tiles per unit of work when an executor splits large scenes into strips
# Options that change results: a resumed batch reuses earlier scenes only if these are unchanged.
_RESULT_OPTIONS = (
    "gsd_m",
    "bit_depth",
    "precision",  # as asked for: "auto" may resolve differently on another machine, and is not told apart
    "threshold",
    "gate",
    "gate_threshold",
    "tta",
    "overlap",
    "min_area_m2",
    "min_confidence",
    "min_presence",
    "simplify_px",
    "regularise",
    "masks_dir",
)


@dataclass(frozen=True)
class ScoreSummary:
    """Outcome of a batch."""

    output: Path
    inputs: int
    scored: int  # scored in this run
    resumed: int  # finished earlier, reused
    failures: dict[str, str]  # input path -> reason (which begins with that path)
    panels: int  # all panels found, including those of inputs without a CRS
    area_m2: float
    unreferenced: dict[str, int] = field(
        default_factory=dict
    )  # inputs without a CRS -> panels (not in output)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The command's exit status: 1 when any input failed, else 0."""
        return 1 if self.failures else 0

    def report(self) -> str:
        """Human-readable summary."""
        lines = [
            f"inputs: {self.inputs} (scored {self.scored}, resumed {self.resumed}, failed {len(self.failures)})",
            f"panels: {self.panels}, total area {self.area_m2:,.1f} m2",
            f"output: {self.output}",
            f"time: {self.seconds:.1f} s",
        ]
        if self.unreferenced:
            lines.append(
                f"note: {sum(self.unreferenced.values())} panel(s) from {len(self.unreferenced)} input(s) without a "
                "CRS are counted above but not in the output (pixel coordinates cannot be placed on the map); "
                f"their polygons are in {self.output.name}.parts/, their probabilities in the tiles CSV and masks"
            )
        lines += [f"failed: {reason}" for reason in self.failures.values()]  # each reason names its file
        return "\n".join(lines)


def score_scene(
    scene: Scene,
    predictor: Predictor,
    options: ScoreOptions,
    workdir: Path,
    progress: Callable[[int], None] | None = None,
) -> SceneResult:
    """Score one scene: tiles -> predictor -> blended probability -> polygons with attributes.

    ``workdir`` holds the temporary model-grid probability raster; ``progress`` is told how many tiles are done.
    """
    [unit] = plan_units(scene, predictor.metadata, options, STRIP_PIXELS, max_tiles=None)
    return join_units([score_unit(unit, predictor, options, workdir, progress)], predictor, options)


def score(
    inputs: Iterable[str | Path],
    out: str | Path,
    options: ScoreOptions = ScoreOptions(),
    predictor: Predictor | None = None,
) -> ScoreSummary:
    """Score every raster in ``inputs`` (files and folders) into the panel layer ``out`` (.geojson/.gpkg/.parquet).

    Inputs that fail are reported in the summary and the others still scored; rerunning with the same ``out``
    skips scenes already finished (``options.resume``). ``predictor`` defaults to the model of ``options.model``.
    """
    start = time.perf_counter()
    out = Path(out).resolve()
    check_output_path(out)
    for given, option, example in [(out, "--out", "panels.geojson"), (options.tiles_csv, "--tiles-csv", "tiles.csv")]:
        if given is not None and Path(given).is_dir():
            raise ScoringConfigError(
                f"{given}: is a folder; {option} takes a file name, such as {Path(given) / example}"
            )
    check_writable_folder(out.parent, "the output (--out)", ScoringConfigError)
    if options.tiles_csv is not None:
        check_writable_folder(Path(options.tiles_csv).resolve().parent, "the tiles CSV (--tiles-csv)",
                              ScoringConfigError)
    if options.masks_dir is not None:
        check_writable_folder(Path(options.masks_dir).resolve(), "masks (--masks-dir)", ScoringConfigError)
    parts_dir = out.with_name(out.name + ".parts")
    paths = find_inputs(inputs, exclude=[parts_dir, *([options.masks_dir] if options.masks_dir else [])])
    if not paths:
        raise ScoringConfigError(
            f"no input rasters found in {[str(i) for i in inputs]}; pass files or folders holding .tif/.png/... images"
        )
    if options.masks_dir is not None:
        _check_mask_names(paths, Path(options.masks_dir))
    given = predictor is not None
    if predictor is None:
        predictor = options.load_predictor()
    fingerprint = _fingerprint(predictor, options)
    manifest_path = out.with_name(out.name + ".manifest.jsonl")
    manifest = (
        Manifest.load(manifest_path, fingerprint) if options.resume else Manifest(manifest_path, fingerprint)
    )

    records: dict[Path, SceneRecord] = {}
    failures: dict[str, str] = {}
    checksums: dict[Path, str] = {}
    todo: list[Scene] = []
    resumed = 0
    for path in paths:
        try:
            scene = open_scene(path, predictor.metadata.bands, options.gsd_m, options.bit_depth)
            checksum = scene_checksum(path, scene.companions)
        except (ScoringError, OSError) as exc:
            failures[str(path)] = str(exc)
            continue
        record = manifest.finished(path, checksum, parts_dir) if options.resume else None
        if record is not None:
            records[path], resumed = record, resumed + 1
        else:
            checksums[path] = checksum
            todo.append(scene)

    show = sys.stderr.isatty() if options.progress is None else options.progress
    parts_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=parts_dir, prefix=".work-") as workdir,
        open_executor(options, predictor, given, Path(workdir)) as executor,
    ):
        # Masks are written whole by one worker, so scenes are split only when none are asked for.
        max_tiles = UNIT_TILES if executor.splits_scenes and options.masks_dir is None else None
        units = [
            unit
            for scene in todo
            for unit in plan_units(scene, predictor.metadata, options, STRIP_PIXELS, max_tiles)
        ]
        with tqdm(
            total=sum(u.owned_tiles for u in units), desc="scoring", unit="tile", disable=not show
        ) as bar:
            for scene, results in gather_scenes(executor.map(units, bar.update)):
                if isinstance(results, str):
                    failures[str(scene.path)] = results
                    continue
                try:
                    result = join_units(results, predictor, options)
                except ScoringError as exc:
                    failures[str(scene.path)] = str(exc)
                    continue
                records[scene.path] = _keep(result, checksums[scene.path], parts_dir, manifest)

    done = [p for p in paths if p in records]
    write_panels(
        combine(gpd.read_parquet(parts_dir / records[p].part) for p in done if records[p].georeferenced), out
    )
    if options.tiles_csv is not None:
        write_tiles_csv(
            ((str(p), records[p].tile_probability, records[p].has_panels) for p in done), options.tiles_csv
        )
    return ScoreSummary(
        output=out,
        inputs=len(paths),
        scored=len(done) - resumed,
        resumed=resumed,
        failures=failures,
        panels=sum(records[p].panels for p in done),
        area_m2=sum(records[p].area_m2 for p in done),
        unreferenced={str(p): records[p].panels for p in done if not records[p].georeferenced},
        seconds=time.perf_counter() - start,
    )


def _check_mask_names(paths: list[Path], masks_dir: Path) -> None:
    """Refuse a batch in which two inputs would write the same mask (masks are named by their input's stem)."""
    first: dict[str, Path] = {}
    for path in paths:
        other = first.setdefault(path.stem, path)
        if other != path:
            raise ScoringConfigError(
                f"{other} and {path} would both write their mask to {masks_dir / path.stem}.*; rename one, or score "
                "them with separate --masks-dir"
            )


def _keep(result: SceneResult, checksum: str, parts_dir: Path, manifest: Manifest) -> SceneRecord:
    """Persist a scene's panels in the parts folder and record it as finished."""
    path = result.scene.path
    part = f"{path.stem}-{scene_key(path)}.parquet"
    with atomic_path(parts_dir / part) as partial:
        result.panels.to_parquet(partial, index=False)
    record = SceneRecord(
        checksum=checksum,
        part=part,
        panels=len(result.panels),
        area_m2=float(result.panels["area_m2"].sum()),
        tile_probability=result.tile_probability,
        has_panels=bool(result.has_panels),
        georeferenced=result.scene.georeferenced,
        mask=str(result.mask_path) if result.mask_path else None,
    )
    manifest.record(path, record)
    return record


def _fingerprint(predictor: Predictor, options: ScoreOptions) -> str:
    described = {
        "model": predictor.name,
        "metadata": predictor.metadata.to_json(),
        "options": {name: str(getattr(options, name)) for name in _RESULT_OPTIONS},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
