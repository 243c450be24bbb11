"""The Ray executor: units spread over a Ray cluster, one model actor per worker slot.

Each actor loads its predictor once and scores the units it is handed; a free actor gets the next unit, so
long and short units balance. A unit that raises is retried by Ray (``UNIT_RETRIES`` times, on the same or a
restarted actor); one that keeps failing is reported as its scene's failure, and the rest of the batch goes on.
Input problems (unreadable or empty rasters) fail at once, as they do locally.
"""

from __future__ import annotations

import math
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Self

import ray
from ray.exceptions import RayActorError, RayError

from pipelines.errors import ScoringConfigError
from pipelines.predictors import Predictor, plan_job
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.units import ScoringUnit, UnitOutcome, score_unit, scoring_failure, tiles_by_size

UNIT_RETRIES = 2  # further attempts at a unit that raised, or whose actor died


class UnitScorer:
    """A Ray actor holding one loaded predictor, planned (compiled when that pays) for its share of the job:
    ``tiles`` (tile size -> count)."""

    def __init__(self, predictor: Predictor | None, options: ScoreOptions, tiles: dict[int, int]) -> None:
        self.options = options
        if predictor is None:
            predictor = options.load_predictor()
        plan_job(predictor, tiles, options.batch_size)
        self.predictor = predictor

    @ray.method(retry_exceptions=True)
    def score(self, unit: ScoringUnit) -> UnitOutcome:
        with tempfile.TemporaryDirectory(prefix="solarscan-unit-") as workdir:
            try:
                return UnitOutcome(unit, score_unit(unit, self.predictor, self.options, Path(workdir)))
            except Exception as exc:
                if (failure := scoring_failure(unit, exc)) is None:
                    raise
                return UnitOutcome(unit, None, failure)


class RayExecutor:
    """Scores units on the Ray cluster at ``options.ray_address`` (a local one when None and none is running)."""

    splits_scenes = True

    def __init__(self, predictor: Predictor | None, options: ScoreOptions) -> None:
        self.predictor, self.options = predictor, options
        self._started_ray = False
        self._actors: list[ray.actor.ActorHandle] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors.clear()
        if self._started_ray:
            ray.shutdown()

    def map(self, units: Sequence[ScoringUnit], progress: Callable[[int], None]) -> Iterator[UnitOutcome]:
        if not units:
            return
        if not ray.is_initialized():
            ray.init(address=self.options.ray_address, include_dashboard=False)
            self._started_ray = True
        count = min(len(units), self._slots())
        share = {size: math.ceil(n / count) for size, n in tiles_by_size(units).items()}
        self._actors = self._start_actors(count, share)
        queue, idle = deque(units), list(self._actors)
        running: dict[ray.ObjectRef, tuple[ScoringUnit, ray.actor.ActorHandle]] = {}
        while queue or running:
            while queue and idle:
                unit, actor = queue.popleft(), idle.pop()
                running[actor.score.remote(unit)] = (unit, actor)
            if not running:  # every actor is gone
                unit = queue.popleft()
                outcome = UnitOutcome(unit, None, f"{unit.describe()}: no Ray worker is left")
            else:
                [ref], _ = ray.wait(list(running), num_returns=1)
                unit, actor = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                    idle.append(actor)
                except RayActorError as exc:  # the actor died more often than it may restart
                    outcome = UnitOutcome(unit, None, f"{unit.describe()}: its Ray worker died: {exc}")
                except RayError as exc:
                    idle.append(actor)
                    cause = getattr(exc, "cause", None) or exc  # a task's own exception, when it raised one
                    reason = f"failed {UNIT_RETRIES + 1} times; last error: {type(cause).__name__}: {cause}"
                    outcome = UnitOutcome(unit, None, f"{unit.describe()}: {reason}")
            progress(outcome.unit.owned_tiles)
            yield outcome

    def _slots(self) -> int:
        """How many actors the cluster's live nodes hold now. Each takes 1 CPU and its GPU share on one node, so a
        node holds as many as both its CPUs and its GPUs allow (counting the whole cluster's GPUs would start actors
        that never get a place, and units handed to them would never finish)."""
        gpus = self.options.num_gpus_per_worker
        slots = 0
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            cpus, node_gpus = int(node["Resources"].get("CPU", 0)), node["Resources"].get("GPU", 0)
            slots += min(cpus, int(node_gpus // gpus)) if gpus > 0 else cpus
        if slots < 1:
            resources = ray.cluster_resources()
            raise ScoringConfigError(
                f"the Ray cluster has no room for a worker with {gpus} GPU(s) and 1 CPU "
                f"(it has {resources.get('GPU', 0)} GPU(s), {resources.get('CPU', 0)} CPU(s))"
            )
        return slots

    def _start_actors(self, count: int, tiles_each: dict[int, int]) -> list[ray.actor.ActorHandle]:
        scorer = ray.remote(UnitScorer).options(
            num_cpus=1,
            num_gpus=self.options.num_gpus_per_worker,
            max_restarts=UNIT_RETRIES,
            max_task_retries=UNIT_RETRIES,
        )
        predictor = ray.put(self.predictor)  # one copy in the object store, shared by the actors
        return [scorer.remote(predictor, self.options, tiles_each) for _ in range(count)]
