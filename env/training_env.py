"""``tacotune/TacotronTraining-v0``: one proxy Tacotron2 training run is one episode."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

import torch

from env.actions import ActionConfig, apply_action
from env.bank import BankConfig, bank_root, load_bank
from env.instances import load_instance_set
from env.observations import OBS_LIMIT, OBS_NAMES, build_observation
from env.reward import RewardConfig, reward_parts
from tacotron.data import Corpus
from tacotron.knobs import Knobs
from tacotron.metrics import is_aligned, steps_to_align
from tacotron.run import TrainingSetup, build_trainer, load_data
from tacotron.trainer import Trainer

KnobFn = Callable[[int], Knobs]  # optimiser step -> knobs, applied before every step of a window


@dataclass
class EnvConfig(TrainingSetup):
    instance_set: str = "train"
    instances: list[str] = field(default_factory=list)  # names or LJSpeech paths; overrides instance_set
    instance_mode: str = "cycle"  # cycle | random
    steps_per_action: int = 20  # K optimiser steps per env step
    episode_steps: int = 300  # optimiser steps per episode
    val_every: int = 1  # env steps between validations (one also runs at reset and at the end)
    max_window_rollbacks: int = 5  # rollbacks in one window that count as unrecoverable divergence
    seed: int = 0
    log_dir: str | None = None  # TensorBoard, one folder per episode
    start: str = "scratch"  # scratch: a new model; bank: a checkpoint drawn from the warm-start bank
    bank: BankConfig = field(default_factory=BankConfig)
    actions: ActionConfig = field(default_factory=ActionConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.start not in ("scratch", "bank"):
            raise ValueError(f"start={self.start!r} must be scratch or bank")
        if self.instance_mode not in ("cycle", "random"):
            raise ValueError(f"instance_mode={self.instance_mode!r} must be cycle or random")
        for key in ("steps_per_action", "episode_steps", "val_every", "max_window_rollbacks"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 1")


class TrainingEnv(gym.Env):
    """Schedule the five Tacotron2 knobs of a proxy training run.

    ## Description
    ``reset`` starts a fresh run (new model, an instance from the instance set); each ``step``
    applies the action to the knobs, runs K optimiser steps and observes that window.

    ## Action Space
    ``Box(-1, 1, (n_active,))``, one dimension per knob not frozen, in the order of
    ``tacotron.knobs.KNOB_NAMES`` (lr, ga_weight, dropout, r, tf_ratio); see ``env.actions``.

    ## Observation Space
    ``Box(-10, 10, (len(OBS_NAMES),), float32)``; names in ``obs_names``, meanings in
    ``env.observations``.

    ## Rewards
    Potential-based on the composite validation score; see ``env.reward``.

    ## Starting State
    ``start="scratch"``: static default knobs (clipped to the action bounds), an untrained model;
    progress runs over ``episode_steps``. ``start="bank"``: a checkpoint of this instance drawn from
    the warm-start bank (``env.bank``) with its knobs and step; progress runs over the bank's
    reference-run length.

    ## Episode End
    Truncated after ``episode_steps`` optimiser steps (or at the bank horizon). Terminated, with ``divergence_penalty``,
    when one window rolls back ``max_window_rollbacks`` times.

    ## Arguments
    ``TrainingEnv(config: EnvConfig | None = None, **overrides)``; overrides are EnvConfig fields.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, **overrides):
        self.cfg = dataclasses.replace(config or EnvConfig(), **overrides)
        self.instances = list(self.cfg.instances) or load_instance_set(self.cfg.instance_set)
        self.obs_names = list(OBS_NAMES)
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (len(OBS_NAMES),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (len(self.cfg.actions.active),), np.float32)
        self._corpora: dict[str, Corpus] = {}
        self._episode = 0
        self.trainer = None
        # Called with the trainer after every optimiser step; benchmarks hook their test-split
        # evaluation here, so the env itself never sees the test split.
        self.after_optimizer_step: Callable[[Trainer], None] | None = None
        self._bank = load_bank(bank_root(self.instances, self.cfg, self.cfg.bank)) if self.cfg.start == "bank" else None

    def _corpus(self, instance: str) -> Corpus:
        if instance not in self._corpora:
            self._corpora[instance] = load_data(instance, self.cfg.proxy, self.cfg.audio, self.cfg.dataset,
                                                progress=False)
        return self._corpora[instance]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed if seed is not None else (self.cfg.seed if self.trainer is None else None))
        if seed is not None:
            self._episode = 0  # seeded instance cycling restarts
        if options and options.get("instance"):
            self.instance = options["instance"]
        elif self.cfg.instance_mode == "random":
            self.instance = self.instances[int(self.np_random.integers(len(self.instances)))]
        else:
            self.instance = self.instances[self._episode % len(self.instances)]
        self._episode += 1
        log_dir = Path(self.cfg.log_dir) / f"episode_{self._episode:05d}" if self.cfg.log_dir else None
        if self.trainer is not None and self.trainer.logger:
            self.trainer.logger.close()
        run_seed = int(self.np_random.integers(2**31 - 1))
        self.trainer = build_trainer(self.cfg, self._corpus(self.instance), log_dir, seed=run_seed)
        self._horizon = self.cfg.episode_steps
        if self._bank is not None:
            self._start_from_bank(run_seed)
        else:
            self.trainer.set_knobs(self.cfg.actions.clip(Knobs().as_dict()))
        self._end_step = min(self.trainer.step_count + self.cfg.episode_steps, self._horizon)
        self._val = self.trainer.validate()
        self._score = self._initial_score = self._val.score
        self._env_steps = 0
        self._checks = [(self.trainer.step_count, is_aligned(self._val.infer))]
        self._aligned_at = None
        self._trajectory = [{"step": self.trainer.step_count, **self.trainer.knobs.as_dict()}]
        return self._observe([]), {"instance": self.instance, "score": self._score,
                                   "start_step": self.trainer.step_count}

    def _start_from_bank(self, run_seed: int) -> None:
        """Restore a bank checkpoint of this instance with room left before the bank horizon."""
        run_steps, entries = self._bank
        usable = [e for e in entries if e["instance"] == self.instance and e["step"] < run_steps]
        if not usable:
            raise ValueError(f"the checkpoint bank has no entry for instance {self.instance!r}")
        entry = usable[int(self.np_random.integers(len(usable)))]
        self.trainer.restore(Path(entry["path"]))
        torch.manual_seed(run_seed)  # episodes from one checkpoint still differ in dropout and sampling
        self.trainer.set_knobs(self.cfg.actions.clip(self.trainer.knobs.as_dict()))
        self._horizon = run_steps

    @property
    def last_val(self):
        """The latest ``ValStats`` (with the inference alignment in ``extras``)."""
        return self._val

    def resume_trainer(self, path: Path) -> np.ndarray:
        """Continue the current episode from a trainer checkpoint (deploy's resume) -> observation."""
        self.trainer.restore(path)
        self._val = self.trainer.validate()
        self._score = self._val.score
        return self._observe([])

    def _observe(self, window) -> np.ndarray:
        return build_observation(window, self._val, self.trainer.knobs,
                                 self.trainer.step_count / self._horizon, self.cfg.actions)

    @property
    def aligned_at(self) -> int | None:
        """Step at which validation confirmed alignment (two consecutive aligned checks), or None."""
        return self._aligned_at

    def _run_window(self, action) -> list:
        tr = self.trainer
        n = min(self.cfg.steps_per_action, self._end_step - tr.step_count)
        knob_fn = action if callable(action) else None
        if isinstance(action, Knobs):
            tr.set_knobs(self.cfg.actions.clip(action.as_dict()))
        elif knob_fn is None:
            tr.set_knobs(apply_action(tr.knobs, action, self.cfg.actions))
        window = []
        for i in range(n):
            if knob_fn is not None:
                tr.set_knobs(self.cfg.actions.clip(knob_fn(tr.step_count).as_dict()))
            if i == 0:
                self._trajectory.append({"step": tr.step_count, **tr.knobs.as_dict()})
            window.append(tr.step())
            if self.after_optimizer_step is not None:
                self.after_optimizer_step(tr)
        return window

    def step(self, action):
        """``action`` is an array from the action space, a ``Knobs`` set directly, or a ``KnobFn``
        applied before every optimiser step of the window (knobs clipped to the action bounds); the
        last two let baseline schedules run through exactly the same episode."""
        if self.trainer is None:
            raise RuntimeError("call reset() before step()")
        tr = self.trainer
        window = self._run_window(action)
        self._env_steps += 1
        rollbacks = sum(s.rolled_back for s in window)
        diverged = rollbacks >= self.cfg.max_window_rollbacks
        truncated = tr.step_count >= self._end_step and not diverged
        prev_score = self._score
        if self._env_steps % self.cfg.val_every == 0 or truncated or diverged:
            self._val = tr.validate()
            self._score = self._val.score
            self._checks.append((tr.step_count, is_aligned(self._val.infer)))
        confirmed = steps_to_align(self._checks)
        newly_aligned = self._aligned_at is None and confirmed is not None
        if newly_aligned:
            self._aligned_at = confirmed
        parts = reward_parts(prev_score, self._score, rollbacks, newly_aligned, diverged, self.cfg.reward)
        info = {"instance": self.instance, "score": self._score, "rollbacks": rollbacks,
                "knobs": tr.knobs.as_dict(), **{f"reward/{k}": v for k, v in parts.items()},
                "val": self._val.flat()}
        if truncated or diverged:
            info |= {"final_score": self._score, "initial_score": self._initial_score,
                     "steps_to_align": self._aligned_at, "knob_trajectory": list(self._trajectory),
                     "diverged": diverged, "rollbacks_total": tr.rollbacks}
        if tr.logger:
            for key, value in parts.items():
                tr.logger.writer.add_scalar(f"reward/{key}", value, tr.step_count)
        return self._observe(window), float(parts["reward"]), diverged, truncated, info

    def close(self) -> None:
        if self.trainer is not None and self.trainer.logger:
            self.trainer.logger.close()
