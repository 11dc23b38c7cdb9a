"""The Optuna search spaces and the schedules their parameters stand for.

Two spaces, both derived from the run's knob space (only its active knobs get parameters, within its
bounds and on its scale): ``schedule``, a parametric family over the fraction of the run
(``parametric_schedule``), and ``constant``, tuned static (``constant_schedule``). ``baseline_params``
gives static and the hand recipe in each space, which a new study runs first.
"""
from __future__ import annotations

import optuna

from tacotron.knobs import KNOB_DEFS, KNOB_NAMES, Knobs, KnobSpace
from tacotron.schedules import HAND_GA_END, HAND_GA_START, HAND_LR_FINAL, HAND_LR_PEAK, Schedule, lerp

SPACES = ("schedule", "constant")


def _suggest_knob(trial: optuna.Trial, param: str, name: str, space: KnobSpace, high: float | None = None) -> float:
    """A value of knob ``name`` within its bounds in ``space`` (or up to ``high``), on its scale."""
    s, d = space.spec(name), KNOB_DEFS[name]
    high = s.high if high is None else high
    if d.integer:
        return trial.suggest_int(param, int(s.low), int(high))
    return trial.suggest_float(param, s.low, high, log=d.log)


def suggest_schedule(trial: optuna.Trial, space: KnobSpace) -> dict:
    """The parametric family's parameters for every knob ``space`` leaves active, knob values within its
    bounds; fractions of the run are the family's own. A frozen knob gets no parameter."""
    active, p = space.active, {}
    if "lr" in active:
        p |= {"lr_peak": _suggest_knob(trial, "lr_peak", "lr", space),
              "lr_final_ratio": trial.suggest_float("lr_final_ratio", 0.05, 1.0)}
    if "ga_weight" in active:
        p |= {"ga_start": _suggest_knob(trial, "ga_start", "ga_weight", space),
              "ga_end": _suggest_knob(trial, "ga_end", "ga_weight", space),
              "ga_decay_frac": trial.suggest_float("ga_decay_frac", 0.1, 1.0)}
    if "dropout" in active:
        p["dropout"] = _suggest_knob(trial, "dropout", "dropout", space)
    if "r" in active:
        p["r_start"] = _suggest_knob(trial, "r_start", "r", space)
        p |= {"r_end": _suggest_knob(trial, "r_end", "r", space, high=p["r_start"]),
              "r_switch_frac": trial.suggest_float("r_switch_frac", 0.2, 1.0)}
    if "tf_ratio" in active:
        p |= {"tf_end": _suggest_knob(trial, "tf_end", "tf_ratio", space),
              "tf_ramp_start": trial.suggest_float("tf_ramp_start", 0.0, 0.9)}
    return p


def parametric_schedule(p: dict) -> Schedule:
    """The searched family, by fraction f of the run: guided attention start -> end over a decay fraction,
    LR from its peak down to peak × final ratio, teacher forcing from full down to its end after a ramp
    start, r from start to end at a switch fraction, and a constant dropout. A knob without parameters
    (frozen) stays at its reference value."""
    ref = Knobs()

    def schedule(step: int, max_steps: int, aligned_at: int | None = None) -> Knobs:
        f = step / max(max_steps, 1)
        knobs = ref.as_dict()
        if "lr_peak" in p:
            knobs["lr"] = p["lr_peak"] * lerp(1.0, p["lr_final_ratio"], f)
        if "ga_start" in p:
            knobs["ga_weight"] = lerp(p["ga_start"], p["ga_end"], f / p["ga_decay_frac"])
        if "dropout" in p:
            knobs["dropout"] = p["dropout"]
        if "r_start" in p:
            knobs["r"] = p["r_start"] if f < p["r_switch_frac"] else p["r_end"]
        if "tf_end" in p:
            ramp = (f - p["tf_ramp_start"]) / max(1e-6, 1 - p["tf_ramp_start"])
            knobs["tf_ratio"] = lerp(ref.tf_ratio, p["tf_end"], ramp)
        return Knobs(**knobs)
    return schedule


def suggest_constant(trial: optuna.Trial, space: KnobSpace) -> dict:
    """Tuned static: one constant per active knob, within its bounds in ``space`` and on its scale."""
    return {name: _suggest_knob(trial, name, name, space) for name in space.active}


def constant_schedule(p: dict) -> Schedule:
    """Constant knobs; a knob without a parameter (frozen) stays at its reference value."""
    knobs = Knobs(**(Knobs().as_dict() | p))
    return lambda step, max_steps, aligned_at=None: knobs


SPACE_FNS = {"schedule": (suggest_schedule, parametric_schedule), "constant": (suggest_constant, constant_schedule)}


def schedule_from_params(space: str, params: dict) -> Schedule:
    return SPACE_FNS[space][1](params)


def baseline_params(space: str, knobs: KnobSpace) -> list[dict]:
    """Static and hand in a search space, enqueued as a search's first trials so that it starts from the
    schedules practitioners trust: exactly static, and hand as near as the space gets (the constant
    space: hand's knobs before alignment; the parametric one: its decays by fraction of the run)."""
    ref, active = Knobs(), set(knobs.active)
    if space == "constant":
        hand_like = {"lr": HAND_LR_PEAK, "ga_weight": HAND_GA_START, "dropout": ref.dropout, "r": 5,
                     "tf_ratio": ref.tf_ratio}
        return [{k: v for k, v in knobs.clip(p).as_dict().items() if k in active} for p in (ref.as_dict(), hand_like)]
    per_knob = {  # knob -> (its parameters under static, under hand)
        "lr": ({"lr_peak": ref.lr, "lr_final_ratio": 1.0}, {"lr_peak": HAND_LR_PEAK,
                                                            "lr_final_ratio": HAND_LR_FINAL / HAND_LR_PEAK}),
        "ga_weight": ({"ga_start": ref.ga_weight, "ga_end": ref.ga_weight, "ga_decay_frac": 1.0},
                      {"ga_start": HAND_GA_START, "ga_end": HAND_GA_END, "ga_decay_frac": 0.5}),
        "dropout": ({"dropout": ref.dropout}, {"dropout": ref.dropout}),
        "r": ({"r_start": ref.r, "r_end": ref.r, "r_switch_frac": 1.0},
              {"r_start": 5, "r_end": 2, "r_switch_frac": 0.5}),
        "tf_ratio": ({"tf_end": ref.tf_ratio, "tf_ramp_start": 0.0}, {"tf_end": 0.5, "tf_ramp_start": 0.3}),
    }
    return [{k: v for name in KNOB_NAMES if name in active for k, v in per_knob[name][which].items()}
            for which in (0, 1)]

