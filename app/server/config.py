"""Settings of one server: where it keeps its data, which model scores, how many jobs run at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.scoring import ScoreOptions

DEFAULT_MAX_UPLOAD_BYTES = 2 << 30  # 2 GiB per upload request


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    api_key: str
    model: Path | None = None  # model bundle; the shipped one when None
    workers: int = 1  # jobs scored at once; 0 accepts and queues jobs without scoring them
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_files: int = 100  # files per job
    score_options: ScoreOptions = field(default_factory=lambda: ScoreOptions(progress=False))

    def __post_init__(self) -> None:
        if self.workers < 0 or self.max_upload_bytes < 1 or self.max_files < 1:
            raise ValueError("workers must be >= 0, max_upload_bytes and max_files >= 1")
        if len(self.api_key) < 16:
            raise ValueError("the API key must have at least 16 characters")
