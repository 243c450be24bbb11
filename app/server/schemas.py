"""JSON bodies of the API, as published in its OpenAPI schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.server.jobs import Job, JobOptionValues


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in a few words.")
    detail: Any = Field(description="Why, and what to do about it.")


class JobOptions(BaseModel):
    """Scoring options one job may set (query parameters of ``POST /v1/jobs``); unset ones are the server's.
    Their ranges are checked by the scoring options themselves, as on the command line."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threshold: float | None = Field(None, description="Pixel probability that counts as panel, in (0, 1].")
    min_area_m2: float | None = Field(None, description="Smaller polygons are dropped (m2, >= 0).")
    simplify_px: float | None = Field(None, description="Simplification tolerance in image pixels (0: none).")
    regularise: bool | None = Field(
        None, description="Square up polygons that fill at least 85 % of their minimum rotated rectangle."
    )
    bit_depth: int | None = Field(
        None, description="Bits of data in integer images (12: full brightness at 4095), 1-16; default: as declared."
    )


class FileInfo(BaseModel):
    index: int
    name: str = Field(
        description="The uploaded file name (for display; files are stored under generated names)."
    )
    size: int = Field(description="Bytes.")
    bounds: tuple[float, float, float, float] | None = Field(
        description="Map extent of the quicklook: west, south, east, north in degrees."
    )
    quicklook: str | None = Field(description="URL of a PNG picture of the image for a map overlay.")


class Progress(BaseModel):
    tiles_done: int
    tiles_total: int
    fraction: float = Field(ge=0, le=1)


class FileError(BaseModel):
    file: str
    error: str


class Summary(BaseModel):
    inputs: int
    scored: int
    resumed: int = Field(description="Images finished before a restart and not scored again.")
    failed: int
    panels: int
    area_m2: float
    seconds: float


class JobInfo(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    created: datetime
    started: datetime | None
    finished: datetime | None
    files: list[FileInfo]
    progress: Progress
    errors: list[FileError] = Field(description="Images that could not be scored, and why.")
    summary: Summary | None
    error: str | None = Field(description="Why the whole job failed.")
    options: JobOptionValues = Field(
        description="The scoring options this job set (the server's own for the others)."
    )
    links: dict[str, str] = Field(description="Result downloads, once the job is done.")


class JobList(BaseModel):
    jobs: list[JobInfo]


def job_info(job: Job) -> JobInfo:
    base = f"/v1/jobs/{job.id}"
    finished = job.state in ("done", "failed") and job.summary is not None
    fraction = 1.0 if job.state == "done" else job.tiles_done / job.tiles_total if job.tiles_total else 0.0
    return JobInfo(
        id=job.id,
        state=job.state,
        created=_time(job.created),
        started=_time(job.started),
        finished=_time(job.finished),
        files=[
            FileInfo(
                index=i,
                name=f.name,
                size=f.size,
                bounds=f.bounds,
                quicklook=f"{base}/files/{i}/quicklook.png" if f.bounds else None,
            )
            for i, f in enumerate(job.files)
        ],
        progress=Progress(tiles_done=job.tiles_done, tiles_total=job.tiles_total, fraction=fraction),
        errors=[FileError(**e) for e in job.errors],
        summary=Summary(**job.summary) if job.summary else None,
        error=job.error,
        options=job.options,
        links={name: f"{base}/{name}" for name in ("panels.geojson", "panels.gpkg", "tiles.csv")}
        if finished
        else {},
    )


def _time(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
