import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import env  # noqa: F401  (registers the env)
from env.actions import ActionConfig, KnobSpec, apply_action
from controller.train import PPOConfig
from env.observations import OBS_NAMES, WINDOW_NAMES, window_features
from env.reward import RewardConfig
from env.training_env import EnvConfig, TrainingEnv
from tacotron.knobs import KNOB_NAMES, Knobs
from tacotron.trainer import StepStats, TrainerConfig


@pytest.fixture
def small_cfg(tiny_env):
    return tiny_env(episode_steps=6)


def test_both_env_checkers_pass_without_warnings(small_cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(gym.make("tacotune/TacotronTraining-v0", config=small_cfg).unwrapped)
        sb3_check_env(gym.make("tacotune/TacotronTraining-v0", config=small_cfg).unwrapped, warn=True)


def test_make_with_overrides(small_cfg, tiny_corpus_dir):
    e = gym.make("tacotune/TacotronTraining-v0", instances=[str(tiny_corpus_dir)], episode_steps=4,
                 steps_per_action=2, trainer=TrainerConfig(batch_size=4))
    obs, _ = e.reset(seed=1)
    assert obs.shape == (len(OBS_NAMES),) and e.unwrapped.obs_names == list(OBS_NAMES)
    assert e.observation_space.contains(obs)


def test_seeded_episodes_are_deterministic(small_cfg):
    def rollout():
        e = TrainingEnv(small_cfg)
        obs, _ = e.reset(seed=7)
        out = [obs]
        for a in ([0.5, -0.5, 0.2, 0.0, -1.0], [-1, 1, 0, 1, 0], [0, 0, 0, 0, 0]):
            out.append(e.step(np.array(a, dtype=np.float32))[0])
        return np.stack(out)
    np.testing.assert_array_equal(rollout(), rollout())


def test_run_end_terminates_and_the_learners_return_is_the_score_gained(small_cfg):
    """The run's real end is ``terminated``; with PPO's gamma the (discounted) return telescopes to
    final score − initial score (+ the alignment bonus)."""
    e = TrainingEnv(small_cfg)
    _, info0 = e.reset(seed=0)
    rewards, done = [], False
    while not done:
        _, r, term, trunc, info = e.step(np.zeros(5, dtype=np.float32))
        rewards.append(r)
        done = term or trunc
    assert term and not trunc and not info["diverged"] and len(rewards) == 3 and e.trainer.step_count == 6
    assert info["initial_score"] == info0["score"] and info["start"] == "scratch"
    bonus = 0.2 if info["steps_to_align"] is not None else 0.0
    gamma = PPOConfig().gamma
    discounted = sum(gamma ** t * r for t, r in enumerate(rewards))
    assert discounted == pytest.approx(info["final_score"] - info["initial_score"] + bonus, abs=1e-6)
    assert len(info["knob_trajectory"]) == 4 and set(info["knob_trajectory"][0]) == {"step", *KNOB_NAMES}


def test_reward_potential_weights_the_free_running_figures_as_configured(small_cfg):
    """reward.score_weights picks what the potential pays for; the reported val score keeps the
    practitioners' weights."""
    speech_only = TrainingEnv(small_cfg, reward=RewardConfig(score_weights=[1.0, 0.0, 0.0]))
    _, info = speech_only.reset(seed=0)
    _, _, _, _, step_info = speech_only.step(np.zeros(5, dtype=np.float32))
    assert step_info["score"] == pytest.approx(step_info["val"]["infer_intelligibility"])
    assert step_info["reward/score_delta"] == pytest.approx(step_info["score"] - info["score"])
    default = TrainingEnv(small_cfg)
    default.reset(seed=0)
    _, _, _, _, step_info = default.step(np.zeros(5, dtype=np.float32))
    assert step_info["score"] == pytest.approx(step_info["val"]["score"])
    with pytest.raises(ValueError, match="score_weights"):
        RewardConfig(score_weights=[1.0, -0.5, 0.0])


def test_instances_cycle_and_option(small_cfg, tiny_corpus_dir):
    e = TrainingEnv(small_cfg, instances=[str(tiny_corpus_dir), "en-us@180"], episode_steps=2,
                    proxy=small_cfg.proxy.__class__(n_utts=24, max_words=3))
    seen = [e.reset(seed=0)[1]["instance"], e.reset()[1]["instance"], e.reset()[1]["instance"]]
    assert seen == [str(tiny_corpus_dir), "en-us@180", str(tiny_corpus_dir)]
    assert e.reset(options={"instance": "en-us@180"})[1]["instance"] == "en-us@180"


def test_blow_up_action_is_penalised_not_fatal(small_cfg):
    """Maximum LR at (practically) no clipping explodes the loss: rollbacks, penalty, clean end."""
    wild = ActionConfig(mode="absolute", lr=KnobSpec(1e-5, 1.0, 1.0))
    e = TrainingEnv(small_cfg, actions=wild, trainer=TrainerConfig(batch_size=4, grad_clip=1e6),
                    episode_steps=20, steps_per_action=4, divergence_rollback_share=0.5)
    e.reset(seed=0)
    done, info, steps = False, {}, []
    while not done:
        obs, r, term, trunc, info = e.step(np.array([1.0, 0, 0, 0, 0], dtype=np.float32))
        steps.append((r, info["rollbacks"], info["reward/rollback_penalty"], term))
        done = term or trunc
    assert term and info["diverged"], steps
    assert info["reward/divergence_penalty"] == -1.0 and r <= info["reward/score_delta"] - 1.0
    assert all(pen == -0.05 * rb for _, rb, pen, _ in steps) and sum(rb for _, rb, _, _ in steps) >= 2
    assert np.isfinite(obs).all() and np.isfinite(info["final_score"])
    assert all(np.isfinite(p.detach().numpy()).all() for p in e.trainer.model.parameters())


def _window(start: int, n: int, loss_rate: float, rollback_every: int = 0) -> list[StepStats]:
    """n steps whose log mel loss falls at ``loss_rate`` per step and whose grad norm alternates 1 and e."""
    return [StepStats(step=s, mel=float(np.exp(2 - loss_rate * s)), mel_post=float(np.exp(2 - loss_rate * s)),
                      gate=0.1, guided=0.0, grad_norm=float(np.e ** (s % 2)), clipped=s % 2 == 1, gate_accuracy=0.9,
                      diagonality=0.5, focus=0.5, monotonicity=0.5, coverage=0.5,
                      rolled_back=bool(rollback_every) and s % rollback_every == 0)
            for s in range(start, start + n)]


def test_episodes_draw_their_batch_size_and_may_hit_a_loss_spike(small_cfg):
    """What a fixed schedule cannot know in advance varies per episode: the batch size, and a loss spike
    (one step at many times the learning rate, at a random step) that shows in the loss after it."""
    env = TrainingEnv(small_cfg, batch_sizes=[2, 4])
    drawn = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        assert env.trainer.sampler.batch_size == info["batch_size"]
        drawn.add(info["batch_size"])
    assert drawn == {2, 4}

    def window_losses(spike_share: float) -> tuple[list[float], int | None]:
        e = TrainingEnv(small_cfg, spike_share=spike_share, spike_factor=100.0)
        _, info = e.reset(seed=0)
        mel = OBS_NAMES.index("log_mel_mean")
        return [e.step(np.zeros(5, dtype=np.float32))[0][mel] for _ in range(3)], info["spike_at"]
    calm, none = window_losses(0.0)
    spiked, at = window_losses(1.0)
    assert none is None and at < 4  # seed 0 spikes early enough for a later step to show it
    shown = (at + 1) // small_cfg.steps_per_action  # the window of the step after the spike
    assert spiked[:shown] == calm[:shown] and spiked[shown] != calm[shown]  # the same run until the spike


def test_an_unstable_run_keeps_spiking_until_its_learning_rate_is_cut(tiny_env):
    """With ``spike_every`` the drawn spike marks a run past its edge of stability: a spike every
    ``spike_every`` steps after it while the LR stays above ``spike_calm_lr``, none once it is cut."""
    cfg = tiny_env(episode_steps=12, spike_share=1.0, spike_every=2, actions=ActionConfig(mode="residual"))

    def spiked_steps(lr_action: float) -> tuple[list[int], int]:
        env = TrainingEnv(cfg)
        _, info = env.reset(seed=0)
        spike_at = info["spike_at"]
        action = np.zeros(len(cfg.actions.active), dtype=np.float32)
        action[cfg.actions.active.index("lr")] = lr_action  # -1: the LR's lower bound, far below the calm LR
        done = False
        while not done:
            *_, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        return info["spiked_steps"], spike_at
    kept_up, at = spiked_steps(0.0)  # the reference LR, 1e-3, is above the calm 5e-4
    assert at < 10 and kept_up == list(range(at, 12, 2))
    assert spiked_steps(-1.0) == ([at], at)  # cut before the spike: it comes once and not again


def test_peeking_at_a_spike_leaves_the_run_exactly_as_it_was(tiny_env):
    """``peek`` shows the next window under a counterfactual (a loss spike now) and undoes it. A spike
    needs a model that has learned something (from an untrained one a big step lowers the loss)."""
    cfg, trained = tiny_env(episode_steps=40), 15  # 30 steps: log-mel loss about 2.2, from 3.5

    def rollout(peek: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        e = TrainingEnv(cfg)
        e.reset(seed=5)
        for _ in range(trained):
            e.step(np.zeros(5, dtype=np.float32))
        peeks = [e.peek(), e.peek(30.0)] if peek else []
        return np.stack([e.step(np.zeros(5, dtype=np.float32))[0] for _ in range(2)]), peeks
    plain, _ = rollout(peek=False)
    after, (calm, spiked) = rollout(peek=True)
    np.testing.assert_array_equal(plain, after)
    window = len(WINDOW_NAMES)  # a peek shows the window; it does not validate
    np.testing.assert_array_equal(calm[:window], plain[0][:window])  # the calm peek is the window that then ran
    mel, above = OBS_NAMES.index("log_mel_mean"), OBS_NAMES.index("log_mel_above_best")
    assert spiked[mel] > calm[mel] + 0.25  # the window's second step shows the spike
    # ... and unlike early training's high loss, it lies above the run's best window so far
    assert calm[above] < 0.05 and spiked[above] > calm[above] + 0.25


def test_window_features_do_not_grow_with_the_window():
    """The same training, seen through windows of 10 and 40 steps, reads the same (rates, spreads and
    shares, not totals, maxima and counts)."""
    short, long = window_features(_window(100, 10, 0.01, 5)), window_features(_window(100, 40, 0.01, 5))
    for name in ("log_mel_rate", "log_mel_post_rate", "log_grad_norm_std", "clip_share", "rollback_share"):
        assert short[name] == pytest.approx(long[name], rel=0.05), name
    assert short["log_mel_rate"] == pytest.approx(-1.0)  # per 100 steps
    assert short["rollback_share"] == pytest.approx(0.2) and short["has_window"] == 1.0


def test_first_observation_flags_no_window_and_nothing_reads_the_runs_length(small_cfg):
    assert "progress" not in OBS_NAMES
    obs_short, _ = TrainingEnv(small_cfg).reset(seed=3)
    obs_long, _ = TrainingEnv(small_cfg, episode_steps=600).reset(seed=3)
    np.testing.assert_array_equal(obs_short, obs_long)  # the same state, whatever the run's length
    assert obs_short[OBS_NAMES.index("has_window")] == 0.0
    assert obs_short[OBS_NAMES.index("aligned")] == 0.0 and obs_short[OBS_NAMES.index("log_step")] == 0.0


def test_a_blind_feature_reads_zero_and_an_unknown_one_is_a_clear_error(small_cfg, tiny_env):
    i = OBS_NAMES.index("log_step")
    seeing, blind = TrainingEnv(small_cfg), TrainingEnv(tiny_env(episode_steps=6, blind=["log_step"]))
    zero = np.zeros(seeing.action_space.shape, np.float32)
    for e in (seeing, blind):
        e.reset(seed=0)
    obs_seeing, obs_blind = seeing.step(zero)[0], blind.step(zero)[0]
    assert obs_seeing[i] > 0 and obs_blind[i] == 0
    np.testing.assert_allclose(np.delete(obs_seeing, i), np.delete(obs_blind, i), atol=1e-5)  # the same run
    with pytest.raises(ValueError, match=r"blind=\['progress'\] are not among the observations"):
        tiny_env(blind=["progress"])


def test_an_env_emits_the_observations_it_names_in_their_order(small_cfg):
    """A policy's own feature list travels with it (``EnvConfig.observations``): its env emits exactly those."""
    names = ["log_mel_above_best", "aligned", "log_mel_mean"]
    full, chosen = TrainingEnv(small_cfg), TrainingEnv(small_cfg, observations=names)
    assert chosen.observation_space.shape == (3,) and chosen.obs_names == names
    zero = np.zeros(full.action_space.shape, np.float32)
    for e in (full, chosen):
        e.reset(seed=0)
    obs_full, obs_chosen = full.step(zero)[0], chosen.step(zero)[0]
    np.testing.assert_allclose(obs_chosen, obs_full[[OBS_NAMES.index(n) for n in names]], atol=1e-5)
    with pytest.raises(ValueError, match=r"observations=\['progress'\] are not observation features"):
        TrainingEnv(small_cfg, observations=["aligned", "progress"])
    with pytest.raises(ValueError, match="each once"):
        TrainingEnv(small_cfg, observations=["aligned", "aligned"])


# --- the pure action mapping -------------------------------------------------------------

def test_relative_actions():
    cfg = ActionConfig()
    k = Knobs(lr=1e-3, ga_weight=5.0, dropout=0.1, r=3, tf_ratio=1.0)
    out = apply_action(k, np.array([-1.0, 1.0, 1.0, 0.9, -1.0]), cfg, aligned=True)
    assert out.lr == pytest.approx(5e-4) and out.ga_weight == 8.0 and out.dropout == pytest.approx(0.15)
    assert out.tf_ratio == pytest.approx(0.9)
    assert apply_action(k, np.array([0, 0, 0, -0.3, 0]), cfg, aligned=True).r == 3  # below the threshold
    assert apply_action(k, np.array([0, 0, 0, -0.9, 0]), cfg, aligned=True).r == 2


@pytest.mark.parametrize("mode", ["relative", "residual", "absolute"])
def test_r_only_steps_down_and_only_once_aligned(mode):
    """r never moves up (into projection rows that never trained), and before alignment not at all,
    so exploration cannot flip r where the deterministic policy never would."""
    cfg = ActionConfig(mode=mode)
    k = Knobs(r=3)
    for a in (-1.0, -0.9, 0.0, 0.9, 1.0):
        assert apply_action(k, np.array([0, 0, 0, a, 0]), cfg, aligned=False).r == 3
        assert apply_action(k, np.array([0, 0, 0, a, 0]), cfg, aligned=True).r <= 3
    assert apply_action(k, np.array([0, 0, 0, -1.0, 0]), cfg, aligned=True).r < 3


@pytest.mark.parametrize("mode", ["relative", "residual", "absolute"])
def test_guided_attention_can_be_held_until_alignment(mode):
    """With the gate no action takes guided attention below its reference before alignment; after it the
    action stands as without the gate, and raising the weight is never gated."""
    held, free = ActionConfig(mode=mode, hold_ga_until_aligned=True), ActionConfig(mode=mode)
    down, up = np.array([0, -1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0, 0])
    assert apply_action(Knobs(), down, free, aligned=False).ga_weight < 5.0
    assert apply_action(Knobs(), down, held, aligned=False).ga_weight == 5.0
    assert apply_action(Knobs(), down, held, aligned=True) == apply_action(Knobs(), down, free, aligned=True)
    assert apply_action(Knobs(), up, held, aligned=False) == apply_action(Knobs(), up, free, aligned=False)
    frozen = ActionConfig(mode=mode, hold_ga_until_aligned=True, ga_weight=KnobSpec(0.0, 20.0, 3.0, frozen=True))
    assert apply_action(Knobs(ga_weight=1.0), np.zeros(4), frozen).ga_weight == 1.0  # a frozen knob keeps its value


def test_actions_clip_to_bounds():
    cfg = ActionConfig()
    k = Knobs(lr=2e-3, ga_weight=19.0, dropout=0.0, r=5, tf_ratio=0.3)
    out = apply_action(k, np.array([5.0, 1.0, -1.0, 1.0, -1.0]), cfg)
    assert (out.lr, out.ga_weight, out.dropout, out.r, out.tf_ratio) == (2e-3, 20.0, 0.0, 5, 0.3)


def test_absolute_actions():
    cfg = ActionConfig(mode="absolute")
    lo = apply_action(Knobs(), -np.ones(5), cfg, aligned=True)
    hi = apply_action(Knobs(), np.ones(5), cfg, aligned=True)
    assert (lo.lr, lo.ga_weight, lo.dropout, lo.r, lo.tf_ratio) == pytest.approx((1e-5, 0.0, 0.0, 1, 0.3))
    assert (hi.lr, hi.ga_weight, hi.dropout, hi.r, hi.tf_ratio) == pytest.approx((2e-3, 20.0, 0.5, 3, 1.0))


def test_residual_actions_are_the_reference_moved_towards_a_bound_and_cannot_drift():
    cfg = ActionConfig(mode="residual")
    far = Knobs(lr=1e-5, ga_weight=20.0, dropout=0.5, r=3, tf_ratio=0.3)  # wherever earlier actions left them
    assert apply_action(far, np.zeros(5), cfg, aligned=True) == Knobs()  # a = 0 is static, whatever came before
    hi, lo = apply_action(far, np.ones(5), cfg, aligned=True), apply_action(far, -np.ones(5), cfg, aligned=True)
    assert (hi.lr, hi.ga_weight, hi.dropout, hi.tf_ratio) == pytest.approx((2e-3, 20.0, 0.5, 1.0))
    assert (lo.lr, lo.ga_weight, lo.dropout, lo.r, lo.tf_ratio) == pytest.approx((1e-5, 0.0, 0.0, 1, 0.3))
    half = apply_action(Knobs(), np.array([-0.5, 0.5, -0.5, 0.0, -0.5]), cfg)
    assert half.lr == pytest.approx(1e-4)  # halfway on the log scale from 1e-3 down to 1e-5
    assert (half.ga_weight, half.dropout, half.tf_ratio) == pytest.approx((12.5, 0.05, 0.65))
    # the same small bias at every decision: relative actions drift to a bound, residual ones stay put
    knobs = {mode: Knobs() for mode in ("relative", "residual")}
    for _ in range(250):
        knobs = {mode: apply_action(k, np.full(5, -0.05), ActionConfig(mode=mode)) for mode, k in knobs.items()}
    assert knobs["relative"].lr == 1e-5 and knobs["residual"].lr == pytest.approx(1e-3 * 100 ** -0.05)


def test_frozen_knobs_lose_their_dimension(small_cfg):
    cfg = ActionConfig(r=KnobSpec(1, 5, 0.5, frozen=True), dropout=KnobSpec(0, 0.5, 0.05, frozen=True))
    assert cfg.active == ["lr", "ga_weight", "tf_ratio"]
    out = apply_action(Knobs(r=3, dropout=0.1), np.ones(3), cfg)
    assert out.r == 3 and out.dropout == 0.1 and out.ga_weight == 8.0
    with pytest.raises(ValueError, match="expected 3"):
        apply_action(Knobs(), np.ones(5), cfg)
    assert TrainingEnv(small_cfg, actions=cfg).action_space.shape == (3,)


def test_bad_env_config():
    with pytest.raises(ValueError, match="instance_mode"):
        EnvConfig(instance_mode="shuffle")
    with pytest.raises(ValueError, match="batch_sizes"):
        EnvConfig(batch_sizes=[0])
    with pytest.raises(ValueError, match="spike_share"):
        EnvConfig(spike_share=1.5)
    with pytest.raises(ValueError, match="spike_factor"):
        EnvConfig(spike_factor=0.5)
    with pytest.raises(ValueError, match="actions.mode"):
        ActionConfig(mode="drift")
    with pytest.raises(ValueError, match="instance_set='nope'"):
        TrainingEnv(instance_set="nope")
