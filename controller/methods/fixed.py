"""Fixed schedules with no search: static defaults and the practitioners' hand recipe."""
from __future__ import annotations

from controller.episodes import Decide, schedule_decider
from controller.methods.base import EpisodeMethod, PrepareContext, Spec
from env.training_env import TrainingEnv
from tacotron.schedules import get_schedule


class FixedSchedule(EpisodeMethod):
    """``tacotron.schedules`` by name; it costs nothing to obtain."""

    def prepare(self, ctx: PrepareContext) -> Spec:
        return Spec(self.name, schedule={"name": self.name})

    def decider(self, spec: Spec, env: TrainingEnv) -> Decide:
        return schedule_decider(get_schedule(spec.schedule["name"]))
