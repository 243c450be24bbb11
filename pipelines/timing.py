"""Cheap wall-clock accumulators for the stages of scoring, read by benchmarks.

``with stage("model"): ...`` (or ``@timed("model")``) adds the elapsed time to that stage. Stages are exclusive
within a thread: time spent in a nested stage counts only there. Reader threads add their time too, so stages
that run in parallel can sum to more than the wall-clock time.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

STAGES = ("compile", "read", "normalise", "model", "blend", "resample", "vectorise", "write")

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
_local = threading.local()  # .open: the stages entered in this thread, innermost last, with their start times


def _charge(name: str, since: float, now: float) -> None:
    with _lock:
        _seconds[name] += now - since


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Charge the time spent in the ``with`` body to stage ``name`` (one of ``STAGES``)."""
    if name not in _seconds:
        raise ValueError(f"unknown stage {name!r}; use one of {', '.join(STAGES)}")
    opened: list[list] = _local.__dict__.setdefault("open", [])
    now = time.perf_counter()
    if opened:
        outer = opened[-1]
        _charge(outer[0], outer[1], now)
    opened.append([name, now])
    try:
        yield
    finally:
        now = time.perf_counter()
        inner = opened.pop()
        _charge(inner[0], inner[1], now)
        if opened:
            opened[-1][1] = now


def timed(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: charge every call of the function to stage ``name``."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with stage(name):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def stage_seconds() -> dict[str, float]:
    """Seconds charged to each stage since the last ``reset_stages``."""
    with _lock:
        return dict(_seconds)


def reset_stages() -> None:
    """Set every stage back to zero."""
    with _lock:
        for name in _seconds:
            _seconds[name] = 0.0
