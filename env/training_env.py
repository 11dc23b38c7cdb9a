"""``tacotune/TacotronTraining-v0``: one proxy Tacotron2 training run is one episode."""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from env.actions import ActionConfig, apply_action
from env.bank import BankConfig, bank_root, load_bank
from env.instances import load_instance_set
from env.observations import OBS_LIMIT, OBS_NAMES, build_observation, window_log_mel
from env.reward import RewardConfig, reward_parts
from tacotron.data import Corpus
from tacotron.knobs import KNOB_DEFS, Knobs
from tacotron.metrics import is_aligned, steps_to_align
from tacotron.run import TrainingSetup, build_trainer, load_data
from tacotron.trainer import StepStats, Trainer

KnobFn = Callable[[int], Knobs]  # optimiser step -> knobs, applied before every step of a window


@dataclass
class EnvConfig(TrainingSetup):
    instance_set: str = "train"
    instances: list[str] = field(default_factory=list)  # names or LJSpeech paths; overrides instance_set
    instance_mode: str = "cycle"  # cycle | random
    steps_per_action: int = 20  # K optimiser steps per env step
    episode_steps: int = 300  # optimiser steps per episode
    val_every: int = 1  # env steps between validations (one also runs at reset and at the end)
    # A window with rollbacks >= this share of K steps is an unrecoverable divergence.
    divergence_rollback_share: float = 0.25
    seed: int = 0
    log_dir: str | None = None  # TensorBoard, one folder per episode
    start: str = "scratch"  # scratch: a new model; bank: a checkpoint drawn from the warm-start bank
    bank: BankConfig = field(default_factory=BankConfig)
    # With start=bank: the share of episodes that start from scratch and run the bank's whole horizon,
    # and the share that start from checkpoints this env's own earlier episodes ended at (the states
    # the current policy creates; the newest refresh_keep are kept).
    scratch_share: float = 0.0
    refresh_share: float = 0.0
    refresh_keep: int = 16
    actions: ActionConfig = field(default_factory=ActionConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    # What a fixed schedule cannot know in advance, drawn per episode: the batch size (from `batch_sizes`;
    # empty keeps the trainer's), and in a `spike_share` of episodes a loss spike at a random optimiser
    # step of the episode: one step at `spike_factor` times the learning rate (a too-large step; 30x
    # about triples a trained tiny model's mel loss: docs/design.md). With `spike_every` > 0 the run has
    # passed its edge of stability there: every `spike_every`-th step after it spikes too while the LR
    # is above `spike_calm_lr`, as practitioners read a spike (cut the LR or it comes back); 0: one spike.
    batch_sizes: list[int] = field(default_factory=list)
    spike_share: float = 0.0
    spike_factor: float = 30.0
    spike_every: int = 0
    spike_calm_lr: float = 5e-4
    # The observation features, in order (``env.observations``): a policy's own list travels with it, so
    # features added later do not change what an older policy reads. Those in `blind` are held at 0, so
    # the policy cannot read them: ["log_step"] hides the step count, so its knobs can follow the run's
    # state (alignment, losses, gradients) but not a clock.
    observations: list[str] = field(default_factory=lambda: list(OBS_NAMES))
    blind: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.start not in ("scratch", "bank"):
            raise ValueError(f"start={self.start!r} must be scratch or bank")
        if self.instance_mode not in ("cycle", "random"):
            raise ValueError(f"instance_mode={self.instance_mode!r} must be cycle or random")
        for key in ("steps_per_action", "episode_steps", "val_every", "refresh_keep"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 1")
        if any(b < 1 for b in self.batch_sizes) or self.spike_factor < 1:
            raise ValueError(f"batch_sizes={self.batch_sizes} must be >= 1 and spike_factor={self.spike_factor} >= 1")
        if self.spike_every < 0 or self.spike_calm_lr <= 0:
            raise ValueError(f"spike_every={self.spike_every} must be >= 0 and spike_calm_lr={self.spike_calm_lr} > 0")
        for key in ("divergence_rollback_share", "scratch_share", "refresh_share", "spike_share"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key}={getattr(self, key)} must be in [0, 1]")
        if unknown := sorted(set(self.observations) - set(OBS_NAMES)):
            raise ValueError(f"observations={unknown} are not observation features; choose from {list(OBS_NAMES)}")
        if not self.observations or len(set(self.observations)) < len(self.observations):
            raise ValueError(f"observations={self.observations} must name at least one feature, each once")
        if unknown := sorted(set(self.blind) - set(self.observations)):
            raise ValueError(f"blind={unknown} are not among the observations; choose from {self.observations}")
        if self.scratch_share + self.refresh_share > 1.0:
            raise ValueError(f"scratch_share + refresh_share = {self.scratch_share + self.refresh_share} must be <= 1")


class TrainingEnv(gym.Env):
    """Schedule the five Tacotron2 knobs of a proxy training run.

    ## Description
    ``reset`` starts a fresh run (new model, an instance from the instance set); each ``step``
    applies the action to the knobs, runs K optimiser steps and observes that window.

    ## Action Space
    ``Box(-1, 1, (n_active,))``, one dimension per knob not frozen, in the order of
    ``tacotron.knobs.KNOB_NAMES`` (lr, ga_weight, dropout, r, tf_ratio); see ``env.actions``
    (r only steps down, and only once alignment is confirmed).

    ## Observation Space
    ``Box(-10, 10, (len(observations),), float32)``, the features ``EnvConfig.observations`` names (all
    of ``OBS_NAMES`` by default; also in ``obs_names``), meanings in ``env.observations``
    (horizon-agnostic: no fraction of the run).

    ## Rewards
    Potential-based on the composite validation score; see ``env.reward``.

    ## Starting State
    ``start="scratch"``: static default knobs (clipped to the action bounds), an untrained model;
    the run is ``episode_steps`` long. ``start="bank"``: a checkpoint of this instance drawn from the
    warm-start bank (``env.bank``), with its knobs, step and alignment state; the run is the bank's
    reference-run length. A ``scratch_share`` of bank episodes starts from scratch and runs that whole
    length; a ``refresh_share`` starts where this env's own earlier episodes ended.

    ## Episode End
    Terminated at the run's end (``episode_steps`` from scratch, the bank's horizon from the bank),
    or with ``divergence_penalty`` when one window rolls back at least ``divergence_rollback_share``
    of K steps. Truncated when a bank-started episode has run ``episode_steps`` before the run's end:
    the run goes on, so the learner bootstraps.

    ## Arguments
    ``TrainingEnv(config: EnvConfig | None = None, **overrides)``; overrides are EnvConfig fields.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, **overrides):
        self.cfg = dataclasses.replace(config or EnvConfig(), **overrides)
        self.instances = list(self.cfg.instances) or load_instance_set(self.cfg.instance_set)
        self.obs_names = list(self.cfg.observations)
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (len(self.obs_names),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (len(self.cfg.actions.active),), np.float32)
        self._corpora: dict[str, Corpus] = {}
        self._episode = 0
        self.trainer = None
        # Called with the trainer after every optimiser step; benchmarks hook their test-split
        # evaluation here, so the env itself never sees the test split.
        self.after_optimizer_step: Callable[[Trainer], None] | None = None
        self._bank = load_bank(bank_root(self.instances, self.cfg, self.cfg.bank)) if self.cfg.start == "bank" else None
        self._refreshed: list[dict] = []  # bank entries this env's own episodes ended at
        self._refresh_dir = None

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
        setup = self.cfg
        if self.cfg.batch_sizes:
            batch_size = int(self.np_random.choice(self.cfg.batch_sizes))
            setup = dataclasses.replace(setup, trainer=dataclasses.replace(setup.trainer, batch_size=batch_size))
        self.trainer = build_trainer(setup, self._corpus(self.instance), log_dir, seed=run_seed)
        self._horizon, self._aligned_at, self.start_kind = self.cfg.episode_steps, None, "scratch"
        self._best_log_mel = None  # the lowest window mel loss of this episode so far (log)
        if self._bank is not None:
            self._start_from_bank(run_seed)
        else:
            self.trainer.set_knobs(self.cfg.actions.reference())
        self._held = self.trainer.knobs  # what frozen knobs keep under a schedule (see ``follow``)
        full_length = self.start_kind == "scratch"
        self._end_step = self._horizon if full_length else min(self.trainer.step_count + self.cfg.episode_steps,
                                                               self._horizon)
        spiked = self.cfg.spike_share > 0 and self.np_random.random() < self.cfg.spike_share
        self._spike_at = int(self.np_random.integers(self.trainer.step_count, self._end_step)) if spiked else None
        self._spiked_steps: list[int] = []
        self._val = self.trainer.validate()
        self._score = self._initial_score = self.cfg.reward.score(self._val.infer)
        self._env_steps = 0
        self._checks = [(self.trainer.step_count, is_aligned(self._val.infer))]
        self._start = {"start": self.start_kind, "start_step": self.trainer.step_count,
                       "start_aligned": self._aligned_at is not None, "batch_size": self.trainer.cfg.batch_size,
                       "spike_at": self._spike_at}
        self._trajectory = [{"step": self.trainer.step_count, **self.trainer.knobs.as_dict()}]
        return self._observe([]), {"instance": self.instance, "score": self._score, **self._start}

    def _start_from_bank(self, run_seed: int) -> None:
        """A scratch start over the bank's horizon, or a restored checkpoint of this instance (from the
        bank or this env's own episodes) with room left before the horizon, its alignment state kept."""
        run_steps, entries = self._bank
        self._horizon = run_steps
        draw = self.np_random.random()
        if draw < self.cfg.scratch_share:
            self.trainer.set_knobs(self.cfg.actions.reference())
            return
        refreshed = [e for e in self._refreshed if e["instance"] == self.instance]
        use_refreshed = refreshed and draw < self.cfg.scratch_share + self.cfg.refresh_share
        usable = refreshed if use_refreshed else [e for e in entries if e["instance"] == self.instance
                                                  and e["step"] < run_steps]
        if not usable:
            raise ValueError(f"the checkpoint bank has no entry for instance {self.instance!r}")
        entry = usable[int(self.np_random.integers(len(usable)))]
        self.trainer.restore(Path(entry["path"]))
        self.trainer.reseed(run_seed)  # episodes from one checkpoint still differ in dropout and sampling
        self.trainer.set_knobs(self.cfg.actions.clip(self.trainer.knobs.as_dict()))
        self._aligned_at = entry.get("aligned_at")
        self.start_kind = "refresh" if use_refreshed else "bank"

    def _refresh_bank(self) -> None:
        """Keep where this episode ended as a start for later ones (the newest ``refresh_keep``)."""
        if self._refresh_dir is None:
            self._refresh_dir = Path(tempfile.mkdtemp(prefix="tacotune-refresh-"))
        path = self._refresh_dir / f"episode_{self._episode:05d}.pt"
        self.trainer.save(path)
        self._refreshed.append({"path": str(path), "instance": self.instance, "step": self.trainer.step_count,
                                "aligned_at": self._aligned_at})
        while len(self._refreshed) > self.cfg.refresh_keep:
            Path(self._refreshed.pop(0)["path"]).unlink(missing_ok=True)

    @property
    def last_val(self):
        """The latest ``ValStats`` (with the inference alignment in ``extras``)."""
        return self._val

    def save_episode(self, path: Path, extra: dict | None = None) -> None:
        """Checkpoint the run with what the episode has measured (and the caller's JSON-able ``extra``)."""
        state = {"aligned_at": self._aligned_at, "initial_score": self._initial_score, "checks": self._checks,
                 "trajectory": self._trajectory, "env_steps": self._env_steps, "start": self._start,
                 "obs": self._obs.tolist(), "held": self._held.as_dict(), "best_log_mel": self._best_log_mel,
                 "spiked_steps": self._spiked_steps}
        self.trainer.save(path, (extra or {}) | {"episode": state})

    def resume_episode(self, path: Path) -> tuple[np.ndarray, dict]:
        """Continue the current episode from a ``save_episode`` checkpoint, keeping the alignment step,
        the initial score and the knob trajectory -> (observation, the caller's extra). A damaged file
        raises ``tacotron.checkpoint.CheckpointError``."""
        extra = self.trainer.restore(path)
        state = extra.pop("episode")
        self._aligned_at, self._initial_score = state["aligned_at"], state["initial_score"]
        self._checks = [tuple(c) for c in state["checks"]]
        self._trajectory, self._env_steps, self._start = state["trajectory"], state["env_steps"], state["start"]
        self._spike_at = self._start.get("spike_at")
        self._held = Knobs(**state["held"])
        self._best_log_mel, self._spiked_steps = state.get("best_log_mel"), state.get("spiked_steps", [])
        self._val = self.trainer.validate()  # deterministic: the validation the saved observation came from
        self._score = self.cfg.reward.score(self._val.infer)
        self._obs = np.array(state["obs"], dtype=np.float32)  # with the window features the kill lost
        return self._obs, extra

    def peek(self, spike_factor: float = 1.0) -> np.ndarray:
        """A counterfactual: the observation the next window would give at the current knobs, its first step
        taken at ``spike_factor`` times the learning rate (1 = no spike), with the last validation's
        features (a peek does not validate); the run is left exactly as it was."""
        with self.trainer.undone() as tr:
            n = min(self.cfg.steps_per_action, self._end_step - tr.step_count)
            window = [self._spiked_step(spike_factor)] + [tr.step() for _ in range(n - 1)] if n else []
            return self._observation(window)

    def _spiked_step(self, factor: float) -> StepStats:
        """One optimiser step at ``factor`` times the learning rate: a too-large step, as spikes the loss
        (the step's own loss is measured before its update; the next ones show the spike)."""
        knobs = self.trainer.knobs
        self.trainer.set_knobs(dataclasses.replace(knobs, lr=min(knobs.lr * factor, KNOB_DEFS["lr"].valid[1])))
        try:
            return self.trainer.step()
        finally:
            self.trainer.set_knobs(knobs)

    def _observation(self, window: list[StepStats]) -> np.ndarray:
        return build_observation(window, self._val, self.trainer.knobs, self.trainer.step_count, self._aligned_at,
                                 self.cfg.actions, self._best_log_mel, self.cfg.observations, self.cfg.blind)

    def _observe(self, window: list[StepStats]) -> np.ndarray:
        """The observation of a window just run, which then counts among the run's earlier windows."""
        self._obs = self._observation(window)
        if (log_mel := window_log_mel(window)) is not None:
            self._best_log_mel = log_mel if self._best_log_mel is None else min(self._best_log_mel, log_mel)
        return self._obs

    @property
    def aligned_at(self) -> int | None:
        """Step at which validation confirmed alignment (two consecutive aligned checks), or None."""
        return self._aligned_at

    def _run_window(self, knob_fn: KnobFn | None) -> list:
        tr = self.trainer
        n = min(self.cfg.steps_per_action, self._end_step - tr.step_count)
        window = []
        for i in range(n):
            if knob_fn is not None:
                tr.set_knobs(self.cfg.actions.hold_frozen(knob_fn(tr.step_count), self._held))
            if i == 0:
                self._trajectory.append({"step": tr.step_count, **tr.knobs.as_dict()})
            if self._spikes_now():
                self._spiked_steps.append(tr.step_count)
                window.append(self._spiked_step(self.cfg.spike_factor))
            else:
                window.append(tr.step())
            if self.after_optimizer_step is not None:
                self.after_optimizer_step(tr)
        return window

    def _spikes_now(self) -> bool:
        """Whether the next optimiser step is a loss spike: the episode's drawn step, and with ``spike_every``
        every that many steps after it while the LR is above ``spike_calm_lr``."""
        if self._spike_at is None or self.trainer.step_count < self._spike_at:
            return False
        since, every = self.trainer.step_count - self._spike_at, self.cfg.spike_every
        return since == 0 or (every > 0 and since % every == 0 and self.trainer.knobs.lr > self.cfg.spike_calm_lr)

    def step(self, action):
        """Apply ``action`` (an array from the action space) to the knobs and run one window."""
        if self.trainer is None:
            raise RuntimeError("call reset() before step()")
        if np.shape(action) != self.action_space.shape:
            raise ValueError(f"action of shape {np.shape(action)} is not in the action space "
                             f"{self.action_space.shape} ({self.cfg.actions.active})")
        self.trainer.set_knobs(apply_action(self.trainer.knobs, action, self.cfg.actions,
                                            aligned=self._aligned_at is not None))
        return self._finish_window(self._run_window(None))

    def follow(self, knob_fn: KnobFn):
        """Run one window of a fixed schedule instead of an action: ``knob_fn(step)`` sets the knobs before
        every optimiser step, clipped to the bounds, frozen knobs held at their starting values. The
        episode is exactly the one ``step`` runs (same validations, alignment, reward and info), so
        baselines are measured like the policy; returns what ``step`` returns."""
        if self.trainer is None:
            raise RuntimeError("call reset() before follow()")
        return self._finish_window(self._run_window(knob_fn))

    def _finish_window(self, window: list):
        tr = self.trainer
        self._env_steps += 1
        rollbacks = sum(s.rolled_back for s in window)
        diverged = rollbacks >= self.cfg.divergence_rollback_share * self.cfg.steps_per_action
        terminated = diverged or tr.step_count >= self._horizon
        truncated = tr.step_count >= self._end_step and not terminated
        prev_score = self._score
        if self._env_steps % self.cfg.val_every == 0 or terminated or truncated:
            self._val = tr.validate()
            self._score = self.cfg.reward.score(self._val.infer)
            self._checks.append((tr.step_count, is_aligned(self._val.infer)))
        confirmed = steps_to_align(self._checks)
        newly_aligned = self._aligned_at is None and confirmed is not None
        if newly_aligned:
            self._aligned_at = confirmed
        parts = reward_parts(prev_score, self._score, rollbacks, newly_aligned, diverged, self.cfg.reward)
        info = {"instance": self.instance, "score": self._score, "rollbacks": rollbacks,
                "knobs": tr.knobs.as_dict(), **{f"reward/{k}": v for k, v in parts.items()},
                "val": self._val.flat()}
        if terminated or truncated:
            info |= {"final_score": self._score, "initial_score": self._initial_score,
                     "steps_to_align": self._aligned_at, "knob_trajectory": list(self._trajectory),
                     "diverged": diverged, "rollbacks_total": tr.rollbacks, "spiked_steps": list(self._spiked_steps),
                     **self._start}
            if truncated and self.cfg.refresh_share > 0:
                self._refresh_bank()
        if tr.logger:
            for key, value in parts.items():
                tr.logger.writer.add_scalar(f"reward/{key}", value, tr.step_count)
        return self._observe(window), float(parts["reward"]), terminated, truncated, info

    def close(self) -> None:
        if self.trainer is not None and self.trainer.logger:
            self.trainer.logger.close()
        if self._refresh_dir is not None:
            shutil.rmtree(self._refresh_dir, ignore_errors=True)
