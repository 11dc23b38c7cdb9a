"""Optuna searches: a sampler over constant knobs (tuned static) or the parametric schedule, multi-fidelity
within the policy's whole search cost in CPU-seconds (unless ``optuna.budget_cpu_s`` is set), or single
fidelity within its optimiser steps (unless ``optuna.budget_steps`` is set), as before issue #28
(``controller.baselines``). Its anytime curve is one search continued to the largest budget, read at
each smaller one."""
from __future__ import annotations

import dataclasses
import math

import optuna

from controller.baselines import OptunaConfig, optuna_search, search_within
from controller.episodes import Decide, schedule_decider
from controller.methods.base import EpisodeMethod, PrepareContext, Spec
from controller.methods.policy import policy_cost, training_instances
from controller.search_spaces import schedule_from_params
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

    def _search(self, ctx: PrepareContext, cfg: OptunaConfig) -> optuna.Study:
        return optuna_search(self.sampler, cfg, ctx.search_env, training_instances(ctx.search_env), prefix=self.name,
                             default_storage=f"journal:{ctx.cache_dir / 'optuna.journal'}", space=self.space)

    def _spec(self, study: optuna.Study, budget_cpu_s: float = math.inf) -> Spec | None:
        state = search_within(study, budget_cpu_s)
        if state.params is None:
            return None
        return Spec(self.name, search_steps=state.steps, search_cpu_s=state.cpu_s,
                    schedule={"space": self.space, "params": state.params},
                    search={"search_curve": state.curve, "study": study.study_name, "trials": state.trials})

    def prepare(self, ctx: PrepareContext) -> Spec:
        cfg = self._config(ctx)
        study = self._search(ctx, cfg)
        spec = self._spec(study, cfg.budget_cpu_s or math.inf)
        if spec is None:
            raise RuntimeError(f"{self.name}: no trial of study {study.study_name} completed within its budget")
        return spec

    def at_budgets(self, ctx: PrepareContext, budgets_cpu_s: list[float]) -> list[Spec | None]:
        """One search, continued (the same study) to the largest budget; its best-so-far at each."""
        cfg = dataclasses.replace(self._config(ctx), budget_cpu_s=max(budgets_cpu_s), budget_steps=0)
        study = self._search(ctx, cfg)
        return [self._spec(study, budget) for budget in budgets_cpu_s]

    def decider(self, spec: Spec, env: TrainingEnv) -> Decide:
        return schedule_decider(schedule_from_params(spec.schedule["space"], spec.schedule["params"]))
