"""Executors map scoring units to their outcomes: in this process, or on a Ray cluster.

``score`` plans the units, hands them to an executor and does everything else (manifest, resume, joining,
merging) itself, the same way whichever executor ran the units.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from pipelines.errors import ScoringConfigError
from pipelines.predictors import Predictor
from pipelines.scoring.options import EXECUTORS, ScoreOptions
from pipelines.scoring.units import ScoringUnit, UnitOutcome


class Executor(Protocol):
    """Runs scoring units and yields their outcomes as they finish, in any order."""

    splits_scenes: bool  # whether large scenes are worth splitting into strips here

    def map(self, units: Sequence[ScoringUnit], progress: Callable[[int], None]) -> Iterator[UnitOutcome]:
        """Outcome of every unit; ``progress`` is told how many (owned) tiles are done."""
        ...


def open_executor(
    options: ScoreOptions, predictor: Predictor, given: bool, workdir: Path
) -> AbstractContextManager[Executor]:
    """The executor named by ``options.executor``.

    ``predictor`` scores locally; Ray workers get a copy of it when the caller ``given`` it, and otherwise load
    the bundle of ``options.model`` themselves (on their own GPU where they have one).
    """
    if options.executor == "local":
        from pipelines.scoring.executors.local import LocalExecutor

        return LocalExecutor(predictor, options, workdir)
    if options.executor == "ray":
        try:
            from pipelines.scoring.executors.ray_executor import RayExecutor
        except ImportError as exc:
            raise ScoringConfigError(
                f"the ray executor needs Ray ({exc}); install it with: pip install 'solarscan[ray]'"
            ) from None
        return RayExecutor(predictor if given else None, options)
    raise ScoringConfigError(f"unknown executor {options.executor!r}; use one of {', '.join(EXECUTORS)}")
