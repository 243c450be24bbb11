"""The local executor: units one after another in this process, with the caller's predictor."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Self

from pipelines.predictors import Predictor, plan_job
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.units import ScoringUnit, UnitOutcome, score_unit, scoring_failure, tiles_by_size


class LocalExecutor:
    """Scores whole scenes in order; input problems become failures, anything else propagates."""

    splits_scenes = False  # strips only pay off when they run in parallel

    def __init__(self, predictor: Predictor, options: ScoreOptions, workdir: Path) -> None:
        self.predictor, self.options, self.workdir = predictor, options, workdir

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, units: Sequence[ScoringUnit], progress: Callable[[int], None]) -> Iterator[UnitOutcome]:
        plan_job(self.predictor, tiles_by_size(units), self.options.batch_size)
        for unit in units:
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                progress(n)

            try:
                result = score_unit(unit, self.predictor, self.options, self.workdir, advance)
            except Exception as exc:
                if (failure := scoring_failure(unit, exc)) is None:
                    raise
                progress(unit.owned_tiles - done)
                yield UnitOutcome(unit, None, failure)
                continue
            yield UnitOutcome(unit, result)
