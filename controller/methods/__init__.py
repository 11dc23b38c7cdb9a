"""The registry of schedule methods, each obtaining a schedule (search cost counted) and running cells.

| method | schedule | search cost |
|---|---|---|
| static, hand, static_release | ``tacotron.schedules`` | 0 |
| tuned_static | Optuna TPE over constant knobs, multi-fidelity (Hyperband), static and hand enqueued | its trials |
| optuna_tpe/cmaes/gp | Optuna over ``parametric_schedule``, the same way | its trials |
| optuna_nsga2 | NSGA-II over ``parametric_schedule``: CER against steps to align (single fidelity) | its trials |
| tuned_static_1f, optuna_tpe_1f | the single-fidelity searches of before issue #28 | its trials |
| policy | the PPO policy, deployed as ``controller deploy`` does (K fixed in steps) | bank + PPO |
| policy_stretched | the same policy with K stretched to the run (``cadence=stretched``) | bank + PPO |
| policy_gated | the same policy with guided attention held at its reference until alignment | bank + PPO |
| replay | the policy's mean knob trajectory on the dev set, replayed open-loop | policy + recording |
| pbt | Ray Tune PBT from perturbed defaults, exploiting every 100 steps | (population − 1) runs in every run |
| pb2 | the same population, exploring with PB2's GP bandit instead of random scaling | the same |

Adding a method is one file with a ``Method`` subclass (``controller.methods.base``) and one line in
``METHODS``; the contract test (tests/test_methods.py) then runs it like every other.
"""
from __future__ import annotations

from controller.methods.base import Cell, Method, PrepareContext, RunRecord, Spec
from controller.methods.fixed import FixedSchedule
from controller.methods.optuna_search import OptunaMethod
from controller.methods.pbt import PBTMethod
from controller.methods.policy import PolicyMethod, ReplayMethod

METHODS: dict[str, Method] = {method.name: method for method in (
    FixedSchedule("static"),
    FixedSchedule("hand"),
    FixedSchedule("static_release"),  # static with hand's guided-attention release alone (ablation)
    OptunaMethod("tuned_static", sampler="tpe", space="constant"),
    OptunaMethod("optuna_tpe", sampler="tpe", space="schedule"),
    OptunaMethod("optuna_cmaes", sampler="cmaes", space="schedule"),
    OptunaMethod("optuna_gp", sampler="gp", space="schedule"),
    OptunaMethod("optuna_nsga2", sampler="nsga2", space="schedule", fidelity="single"),  # CER against steps to align
    OptunaMethod("tuned_static_1f", sampler="tpe", space="constant", fidelity="single"),  # before issue #28
    OptunaMethod("optuna_tpe_1f", sampler="tpe", space="schedule", fidelity="single"),
    PolicyMethod("policy", cadence="fixed"),
    PolicyMethod("policy_stretched", cadence="stretched"),
    PolicyMethod("policy_gated", cadence="fixed", hold_ga_until_aligned=True),
    ReplayMethod("replay"),
    PBTMethod("pbt"),
    PBTMethod("pb2", scheduler="pb2"),  # PBT's population with a GP-bandit explore
)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"method {name!r} is unknown; choose from {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "Cell", "Method", "PrepareContext", "RunRecord", "Spec", "get_method"]
