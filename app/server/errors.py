"""Errors the API answers with: a status code and a JSON body ``{"error": ..., "detail": ...}``."""

from __future__ import annotations


class ApiError(Exception):
    """A client error with its HTTP status, a short ``error`` phrase and a ``detail`` that says what to do."""

    def __init__(self, status_code: int, error: str, detail: str) -> None:
        super().__init__(f"{status_code} {error}: {detail}")
        self.status_code, self.error, self.detail = status_code, error, detail


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, "job not found", f"no job with id {job_id!r}; list jobs with GET /v1/jobs")
