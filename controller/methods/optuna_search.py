"""Optuna searches: a sampler over constant knobs (tuned static) or the parametric schedule, multi-fidelity
within the policy's whole search cost in CPU-seconds (unless ``optuna.budget_cpu_s`` is set), or single
fidelity within its optimiser steps (unless ``optuna.budget_steps`` is set), as before issue #28
(``controller.baselines``)."""
from __future__ import annotations

import dataclasses

from controller.baselines import OptunaConfig, best_params, optuna_search, schedule_from_params, search_cost
from controller.episodes import Decide, schedule_decider
from controller.methods.base import EpisodeMethod, PrepareContext, Spec
from controller.methods.policy import policy_cost, training_instances
from controller.policy_io import policy_fingerprint
from env.training_env import TrainingEnv
from tacotron.trainer import yardstick_key


class OptunaMethod(EpisodeMethod):
    def __init__(self, name: str, sampler: str, space: str, fidelity: str = "multi"):
        super().__init__(name)
        self.sampler, self.space, self.fidelity = sampler, space, fidelity

    def _config(self, ctx: PrepareContext) -> OptunaConfig:
        """The search's config: multi-fidelity on CPU-seconds, or single fidelity on optimiser steps with
        the median pruner, as before issue #28; the budget defaults to the policy's cost."""
        cost = policy_cost(ctx.policy) if ctx.policy else {"search_steps": 0, "search_cpu_s": 0.0}
        if self.fidelity == "multi":
            return dataclasses.replace(ctx.optuna, fidelity="multi", budget_steps=0,
                                       budget_cpu_s=ctx.optuna.budget_cpu_s or cost["search_cpu_s"])
        return dataclasses.replace(ctx.optuna, fidelity="single", pruner="median", budget_cpu_s=0.0,
                                   budget_steps=ctx.optuna.budget_steps or cost["search_steps"])

    def search_key(self, ctx: PrepareContext) -> dict:
        # The objective is scored by the yardstick; the default budget is the policy's cost.
        return {"optuna": self._config(ctx), "search_env": ctx.search_env, "yardstick": yardstick_key(),
                "policy": policy_fingerprint(ctx.policy) if ctx.policy else None}

    def prepare(self, ctx: PrepareContext) -> Spec:
        study = optuna_search(self.sampler, self._config(ctx), ctx.search_env,
                              training_instances(ctx.search_env), prefix=self.name,
                              default_storage=f"journal:{ctx.cache_dir / 'optuna.journal'}", space=self.space)
        steps, cpu, curve = search_cost(study)
        return Spec(self.name, search_steps=steps, search_cpu_s=cpu,
                    schedule={"space": self.space, "params": best_params(study)},
                    search={"search_curve": curve, "study": study.study_name, "trials": len(study.trials)})

    def decider(self, spec: Spec, env: TrainingEnv) -> Decide:
        return schedule_decider(schedule_from_params(spec.schedule["space"], spec.schedule["params"]))
