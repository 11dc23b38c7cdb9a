"""Optuna searches: a sampler over constant knobs (tuned static) or the parametric schedule, within
the policy's whole search cost in optimiser steps unless ``optuna.budget_steps`` is set
(``controller.baselines``)."""
from __future__ import annotations

import dataclasses

from controller.baselines import best_params, optuna_search, schedule_from_params, search_cost
from controller.episodes import Decide, schedule_decider
from controller.methods.base import EpisodeMethod, PrepareContext, Spec
from controller.methods.policy import policy_cost, training_instances
from controller.policy_io import policy_fingerprint
from env.training_env import TrainingEnv
from tacotron.trainer import yardstick_key


class OptunaMethod(EpisodeMethod):
    def __init__(self, name: str, sampler: str, space: str):
        super().__init__(name)
        self.sampler, self.space = sampler, space

    def search_key(self, ctx: PrepareContext) -> dict:
        # The objective is scored by the yardstick; the default budget is the policy's cost.
        return {"optuna": ctx.optuna, "search_env": ctx.search_env, "yardstick": yardstick_key(),
                "policy": policy_fingerprint(ctx.policy) if ctx.policy else None}

    def prepare(self, ctx: PrepareContext) -> Spec:
        budget = ctx.optuna.budget_steps or (policy_cost(ctx.policy)["search_steps"] if ctx.policy else 0)
        study = optuna_search(self.sampler, dataclasses.replace(ctx.optuna, budget_steps=budget), ctx.search_env,
                              training_instances(ctx.search_env), prefix=self.name,
                              default_storage=f"journal:{ctx.cache_dir / 'optuna.journal'}", space=self.space)
        steps, cpu, curve = search_cost(study)
        return Spec(self.name, search_steps=steps, search_cpu_s=cpu,
                    schedule={"space": self.space, "params": best_params(study)},
                    search={"search_curve": curve, "study": study.study_name, "trials": len(study.trials)})

    def decider(self, spec: Spec, env: TrainingEnv) -> Decide:
        return schedule_decider(schedule_from_params(spec.schedule["space"], spec.schedule["params"]))
