"""Jobs: their state in SQLite, and worker threads that score them in order with the scoring pipeline.

A job is ``queued`` -> ``running`` -> ``done`` or ``failed``. A job found ``running`` at start-up was cut off by a
stopped server: it is queued again at the head of the line and the scoring manifest in its output folder lets it
skip every scene finished before.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np

from app.server.storage import DataDir, JobFiles, StoredFile
from pipelines.errors import ScoringError
from pipelines.predictors import Predictor, TileScores, plan_job
from pipelines.scenes import open_scene
from pipelines.scoring.export import write_panels, write_tiles_csv
from pipelines.scoring.job import STRIP_PIXELS, ScoreSummary, score
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.units import ScoringUnit, plan_units, tiles_by_size

JobOptionValues = dict[str, bool | int | float]  # ScoreOptions fields a job set, by name
log = logging.getLogger("solarscan.server")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    files TEXT NOT NULL,
    tiles_done INTEGER NOT NULL DEFAULT 0,
    tiles_total INTEGER NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '[]',
    summary TEXT,
    error TEXT,
    options TEXT NOT NULL DEFAULT '{}'
)
"""
# Columns added since the first schema, for data folders made by an earlier server: name -> declaration.
_ADDED_COLUMNS = {"options": "TEXT NOT NULL DEFAULT '{}'"}


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    created: float
    files: list[StoredFile]
    started: float | None = None
    finished: float | None = None
    tiles_done: int = 0
    tiles_total: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)  # per file: {"file": name, "error": reason}
    summary: dict[str, float] | None = None
    error: str | None = None  # why the whole job failed
    options: JobOptionValues = field(default_factory=dict)


class JobBusyError(Exception):
    """The job is being scored and cannot be removed now."""


class JobStore:
    """Jobs in SQLite, shared by the request handlers and the workers (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._transaction() as db:
            db.execute(_SCHEMA)
            present = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, declaration in _ADDED_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job_id: str, files: list[StoredFile], options: JobOptionValues) -> Job:
        """Queue a job scoring ``files`` with ``options`` (ScoreOptions fields) over the server's own."""
        payload = json.dumps([dataclasses.asdict(f) for f in files])
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, state, created, files, options) VALUES (?, 'queued', ?, ?, ?)",
                (job_id, time.time(), payload, json.dumps(options)),
            )
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def all(self) -> list[Job]:
        with self._transaction() as db:
            return [_job(row) for row in db.execute("SELECT * FROM jobs ORDER BY seq")]

    def claim(self) -> Job | None:
        """Mark the oldest queued job running and return it; None when the queue is empty."""
        with self._transaction() as db:
            row = db.execute(
                "UPDATE jobs SET state = 'running', started = ? WHERE seq = "
                "(SELECT seq FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1) RETURNING *",
                (time.time(),),
            ).fetchone()
        return _job(row) if row else None

    def progress(self, job_id: str, done: int, total: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET tiles_done = ?, tiles_total = ? WHERE id = ?", (done, total, job_id))

    def finish(self, job_id: str, summary: dict, errors: list[dict[str, str]], error: str | None) -> None:
        """Record the outcome: ``done``, or ``failed`` when ``error`` says why."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, finished = ?, summary = ?, errors = ?, error = ?, "
                "tiles_done = tiles_total WHERE id = ?",
                (
                    "failed" if error else "done",
                    time.time(),
                    json.dumps(summary) if summary else None,
                    json.dumps(errors),
                    error,
                    job_id,
                ),
            )

    def remove(self, job_id: str) -> bool:
        """Forget a job that is not running; False when there is no such job. Raises JobBusyError."""
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            if row["state"] == "running":
                raise JobBusyError(job_id)
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return True

    def requeue_running(self) -> int:
        """Queue again the jobs a stopped server left running; returns how many."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE jobs SET state = 'queued', started = NULL WHERE state = 'running'"
            ).rowcount

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        state=row["state"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        files=[
            StoredFile(**{**f, "bounds": tuple(f["bounds"]) if f["bounds"] else None})
            for f in json.loads(row["files"])
        ],
        tiles_done=row["tiles_done"],
        tiles_total=row["tiles_total"],
        errors=json.loads(row["errors"]),
        summary=json.loads(row["summary"]) if row["summary"] else None,
        error=row["error"],
        options=json.loads(row["options"]),
    )


class _ProgressPredictor:
    """Passes batches to a predictor and reports how many tiles it has scored (same name and metadata,
    so a resumed batch still matches the scoring manifest)."""

    def __init__(self, predictor: Predictor, report: Callable[[int], None]) -> None:
        self._predictor, self._report = predictor, report
        self.metadata, self.name = predictor.metadata, predictor.name

    def predict(self, batch: np.ndarray) -> TileScores:
        scores = self._predictor.predict(batch)
        self._report(len(batch))
        return scores

    def presence(self, batch: np.ndarray) -> np.ndarray:
        return self._predictor.presence(batch)


class JobRunner:
    """Worker threads, each with its own predictor (made once by ``predictor_factory``), scoring queued jobs."""

    def __init__(
        self,
        store: JobStore,
        data: DataDir,
        predictor_factory: Callable[[], Predictor],
        workers: int,
        options: ScoreOptions,
    ) -> None:
        self.store, self.data = store, data
        self.predictor_factory, self.options = predictor_factory, options
        self._wake = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"solarscan-worker-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        requeued = self.store.requeue_running()
        if requeued:
            log.warning("%d interrupted job(s) queued again; they resume where they stopped", requeued)
        for thread in self._threads:
            thread.start()

    def notify(self) -> None:
        """Tell the workers that a job was queued."""
        with self._wake:
            self._wake.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs. A job still being scored after ``timeout`` is left to the process's exit and is
        queued again at the next start."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        predictor: Predictor | None = None
        while True:
            with self._wake:
                if self._stopping:
                    return
                job = self.store.claim()
                if job is None:
                    self._wake.wait(timeout=2.0)
                    continue
            try:
                predictor = predictor or self.predictor_factory()
            except Exception as exc:  # tried again with the next job (e.g. once the model is installed)
                log.exception("the model cannot be loaded")
                self.store.finish(job.id, {}, [], f"the model cannot be loaded: {exc}")
                continue
            try:
                self._run(job, predictor)
            except Exception as exc:
                log.exception("job %s failed", job.id)
                self.store.finish(job.id, {}, [], f"scoring stopped: {type(exc).__name__}: {exc}")

    def _run(self, job: Job, predictor: Predictor) -> None:
        files = self.data.job(job.id)
        inputs = {files.input(f.stored): f.name for f in job.files}
        options = dataclasses.replace(
            job_score_options(self.options, job.options), tiles_csv=files.scored_tiles, progress=False, resume=True
        )
        tiles = _tile_count(list(inputs), predictor, options)
        plan_job(predictor, tiles, options.batch_size)
        total = sum(tiles.values())  # hidden from the pipeline by the progress wrapper
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            self.store.progress(job.id, min(done, total), total)

        report(0)
        try:
            summary = score(list(inputs), files.scored_panels, options, _ProgressPredictor(predictor, report))
        except ScoringError as exc:
            self.store.finish(job.id, {}, [], named(str(exc), inputs))
            return
        _publish(files, inputs)
        errors = [
            {"file": inputs[Path(path)], "error": named(reason, inputs)}
            for path, reason in summary.failures.items()
        ]
        failed = len(summary.failures) == summary.inputs
        self.store.finish(job.id, _summary(summary), errors, "no input could be scored" if failed else None)


def job_score_options(server: ScoreOptions, job: JobOptionValues) -> ScoreOptions:
    """The server's scoring options with those a job set; raises ScoringConfigError for values out of range."""
    return dataclasses.replace(server, **job)


def _tile_count(paths: list[Path], predictor: Predictor, options: ScoreOptions) -> dict[int, int]:
    """Tiles the pipeline will cut from the scenes, per tile size (scenes it cannot open count none)."""
    meta = predictor.metadata
    units: list[ScoringUnit] = []
    for path in paths:
        try:
            scene = open_scene(path, meta.bands, options.gsd_m, options.bit_depth)
        except (ScoringError, OSError):
            continue
        units += plan_units(scene, meta, options, STRIP_PIXELS, max_tiles=None)
    return tiles_by_size(units)


def _publish(files: JobFiles, names: dict[Path, str]) -> None:
    """The downloads: panel layers and tiles CSV naming each image by its uploaded name, not its server path."""
    panels = gpd.read_parquet(files.scored_panels)
    panels["source"] = panels["source"].map(lambda p: names.get(Path(p), p))
    write_panels(panels, files.geojson)
    write_panels(panels, files.gpkg)
    with files.scored_tiles.open(newline="") as f:
        rows = [
            (names.get(Path(r["path"]), r["path"]), float(r["panel_probability"]), r["has_panels"] == "true")
            for r in csv.DictReader(f)
        ]
    write_tiles_csv(rows, files.tiles_csv)


def named(message: str, names: dict[Path, str]) -> str:
    """``message`` with server paths replaced by the uploaded file names."""
    for path, name in names.items():
        message = message.replace(str(path), name)
    return message


def _summary(summary: ScoreSummary) -> dict[str, float]:
    return {
        "inputs": summary.inputs,
        "scored": summary.scored,
        "resumed": summary.resumed,
        "failed": len(summary.failures),
        "panels": summary.panels,
        "area_m2": round(summary.area_m2, 3),
        "seconds": round(summary.seconds, 3),
    }
