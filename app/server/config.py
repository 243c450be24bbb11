"""Settings of one server: where it keeps its data, which model scores, how many jobs run at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.scoring.options import ScoreOptions

DEFAULT_MAX_UPLOAD_BYTES = 2 << 30  # 2 GiB per upload request
# Width x height of one uploaded image: a 45,000 px square, about 180 km2 at 0.3 m, more than an orthophoto
# sheet. The byte limit alone does not bound the work: a small, highly compressed upload can declare any size,
# and each scene costs scoring time and a temporary probability raster of a byte per model-grid pixel.
DEFAULT_MAX_PIXELS = 2_000_000_000
MIN_API_KEY_CHARS = 16


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    api_key: str
    model: Path | None = None  # model bundle; the shipped one when None
    workers: int = 1  # jobs scored at once; 0 accepts and queues jobs without scoring them
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_files: int = 100  # files per job
    max_pixels: int = DEFAULT_MAX_PIXELS  # width x height of each image
    score_options: ScoreOptions = field(default_factory=lambda: ScoreOptions(progress=False))

    def __post_init__(self) -> None:
        if self.workers < 0 or self.max_upload_bytes < 1 or self.max_files < 1 or self.max_pixels < 1:
            raise ValueError("workers must be >= 0, max_upload_bytes, max_files and max_pixels >= 1")
        if len(self.api_key) < MIN_API_KEY_CHARS:
            raise ValueError(f"the API key must have at least {MIN_API_KEY_CHARS} characters")
