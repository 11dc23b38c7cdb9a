"""The ``tacotune`` command. Each subcommand composes a Hydra config from configs/ plus
``key=value`` overrides, converts it to typed dataclasses and calls library code.

This is the only module that touches Hydra.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Callable

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from controller.compare import CompareConfig, compare
from controller.deploy import DeployConfig, deploy
from controller.explain import ExplainConfig, explain
from controller.policy_io import load_meta
from controller.surrogate import RecordConfig, record_transitions
from controller.train import ControllerConfig, train_controller
from env.bank import build_bank
from env.instances import CONFIG_DIR, load_instance_set
from env.training_env import EnvConfig
from tacotron.checkpoint import CheckpointWriteError
from tacotron.proxy import ProxyOptions, generate_proxy_corpus, parse_instance
from tacotron.run import RunConfig, train_run
from tacotron.speech_eval import EvalConfig, evaluate_wavs, format_table


@dataclasses.dataclass
class ProxyCommand(ProxyOptions):
    voice: str = "en-us"
    rate: int = 170
    out: str | None = None
    instance_set: str | None = None


@dataclasses.dataclass
class DemoCommand:
    """The main job: proxy corpora -> PPO controller -> deploy on a test voice -> comparison.
    Its settings live in one place, ``configs/demo.yaml``."""

    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    compare: CompareConfig = dataclasses.field(default_factory=CompareConfig)


for schema_name, schema in {"run_schema": RunConfig, "proxy_schema": ProxyCommand, "demo_schema": DemoCommand,
                            "controller_schema": ControllerConfig, "deploy_schema": DeployConfig,
                            "compare_schema": CompareConfig, "explain_schema": ExplainConfig,
                            "env_schema": EnvConfig, "record_schema": RecordConfig, "eval_schema": EvalConfig}.items():
    ConfigStore.instance().store(name=schema_name, node=schema)


def load_config(name: str, overrides: list[str]):
    """Compose configs/<name>.yaml with overrides -> typed dataclass (validated)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name=name, overrides=overrides)
    return OmegaConf.to_object(cfg)


def config_text(name: str) -> str:
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return OmegaConf.to_yaml(compose(config_name=name))
    except (HydraException, OmegaConfBaseException) as err:
        return f"(could not compose the defaults: {err})"


def cmd_proxy(cfg: ProxyCommand) -> None:
    opts = ProxyOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ProxyOptions)})
    names = load_instance_set(cfg.instance_set) if cfg.instance_set else [f"{cfg.voice}@{cfg.rate}"]
    for name in names:
        print(generate_proxy_corpus(parse_instance(name, opts), cfg.out))


def cmd_train(cfg: RunConfig) -> None:
    summary = train_run(cfg)
    final = summary.final
    print(f"done: free-running val CER {final['infer_cer']:.3f}, MCD-DTW-SL {final['infer_mcd_dtw_sl']:.2f} dB, "
          f"diagonality {final['infer_diagonality']:.2f}, stop rate {final['infer_stop_rate']:.2f}, "
          f"steps to align {summary.steps_to_align}, rollbacks {summary.rollbacks}; outputs in {cfg.out_dir} "
          f"(tensorboard --logdir {cfg.out_dir}/tb)")


def cmd_controller_train(cfg: ControllerConfig) -> None:
    policy = train_controller(cfg)
    print(f"policy written to {policy}")
    if (best := policy.with_name("policy_best")).is_dir():
        print(f"best on the held-out voices: {best} (held-out score {load_meta(best)['heldout_score']:.3f})")


def cmd_controller_deploy(cfg: DeployConfig) -> None:
    s = deploy(cfg)
    print(f"done: final score {s['final_score']:.3f}, steps to align {s['steps_to_align']}, "
          f"rollbacks {s['rollbacks']}; knob trajectory in {cfg.out_dir}/knobs.csv and knobs.png")


def cmd_controller_explain(cfg: ExplainConfig) -> None:
    result = explain(cfg)
    for action, features in result["top_features"].items():
        print(f"{action:>9}: most sensitive to {', '.join(features)}")
    for action, phases in result["mean_action_by_phase"].items():
        print(f"{action:>9}: mean action before alignment {phases['before_aligned']}, after {phases['after_aligned']}")
    print(f"plots in {cfg.out_dir}/alignment_*.png (knobs against alignment) and sensitivity.png")


def cmd_build_bank(cfg: EnvConfig) -> None:
    instances = list(cfg.instances) or load_instance_set(cfg.instance_set)
    print(f"bank written to {build_bank(instances, cfg, cfg.bank)}")


def cmd_record_transitions(cfg: RecordConfig) -> None:
    print(f"transitions written to {record_transitions(cfg)}; pre-train on them with `tacotune controller train "
          f"surrogate.transitions={cfg.out} surrogate.pretrain_timesteps=20000`")


def cmd_bench_compare(cfg: CompareConfig) -> None:
    compare(cfg)
    print((Path(cfg.out_dir) / f"{cfg.name}.md").read_text())


def cmd_eval(cfg: EvalConfig) -> None:
    result = evaluate_wavs(cfg)
    print(format_table(result))
    print(f"written to {Path(cfg.wavs) / 'eval.json'}")


def cmd_demo(cfg: DemoCommand) -> None:
    env = cfg.controller.env
    train_instances = list(env.instances) or load_instance_set(env.instance_set)
    for name in train_instances + load_instance_set(cfg.compare.dev_set) + list(cfg.compare.data):
        generate_proxy_corpus(parse_instance(name, env.proxy))
    cmd_controller_train(cfg.controller)  # builds the bank first (cached)
    cmd_bench_compare(cfg.compare)


COMMANDS: dict[tuple[str, ...], tuple[str, Callable, str]] = {
    ("data", "proxy"): ("proxy", cmd_proxy, "Synthesise an espeak-ng proxy corpus in the LJSpeech layout."),
    ("train",): ("train", cmd_train, "Train Tacotron2 on a proxy instance or an LJSpeech folder with a "
                                      "knob schedule (static, hand or static_release); checkpoints, TensorBoard, "
                                      "resume."),
    ("controller", "train"): ("controller/ppo", cmd_controller_train,
                              "Train a PPO scheduling policy across proxy runs; checkpoints and resume=true."),
    ("controller", "deploy"): ("controller/deploy", cmd_controller_deploy,
                               "Schedule a training run with a trained policy; writes knobs.csv/png."),
    ("controller", "explain"): ("controller/explain", cmd_controller_explain,
                                "Why a policy acts: its knobs against alignment over full runs, each action's "
                                "sensitivity to each observation, its mean action before and after alignment."),
    ("env", "build-bank"): ("env/build_bank", cmd_build_bank,
                            "Build (or finish) the warm-start checkpoint bank used by env start=bank."),
    ("env", "record-transitions"): ("env/record_transitions", cmd_record_transitions,
                                    "Record real proxy-episode transitions under random actions, to fit the "
                                    "surrogate that PPO can pre-train on (controller train surrogate.*)."),
    ("bench", "compare"): ("bench/compare", cmd_bench_compare,
                           "Equal-compute comparison of the methods (static, hand, the Optuna searches, PBT, "
                           "the policy and its open-loop replay) on eval_set's instances (dev2; the sealed "
                           "test set once, at the end), each scored free-running on its test split; writes "
                           "<name>.json/.md/.png; resumes from the runs already done."),
    ("eval",): ("eval", cmd_eval, "Score any system's speech: every wavs=DIR/<utterance id>.wav in split=test "
                                   "(or train, val) of data=INSTANCE_OR_FOLDER, by CER (the recogniser), "
                                   "MCD-DTW-SL and GV ratio; prints a table and writes DIR/eval.json."),
    ("demo",): ("demo", cmd_demo, "The README's main job (14-20 min on 2 cores): proxy corpora, a warm-start "
                                   "bank, PPO training of a policy that sets lr and ga_weight, then that "
                                   "policy against the static schedule in a 1,000-step run on a test voice."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tacotune", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Learned hyperparameter schedules for Tacotron2 training.\n\n"
                    "Every subcommand takes Hydra-style key=value overrides, e.g.\n"
                    "  tacotune train data=en-gb@150 model=tiny schedule=static max_steps=300\n"
                    "A bad key or value fails at start and names the key.")
    groups = parser.add_subparsers(dest="command", required=True)
    nested: dict[str, argparse._SubParsersAction] = {}
    for path, (config, _, help_text) in COMMANDS.items():
        parent = groups
        if len(path) == 2:
            if path[0] not in nested:
                members = ", ".join(p[1] for p in COMMANDS if p[0] == path[0])
                nested[path[0]] = groups.add_parser(path[0], help=f"{path[0]} commands: {members}").add_subparsers(
                    dest="subcommand", required=True)
            parent = nested[path[0]]
        sub = parent.add_parser(path[-1], help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=f"{help_text}\n\nDefaults (configs/{config}.yaml):\n\n"
                                            f"{config_text(config)}")
        sub.add_argument("--config", default=config, metavar="NAME",
                         help="the config to start from, configs/NAME.yaml (default: %(default)s); e.g. "
                              "controller/full_run_policy for `controller train`")
        sub.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides")
        sub.set_defaults(path=path)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    _, run, _ = COMMANDS[args.path]
    try:
        cfg = load_config(args.config, args.overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        print(f"tacotune: bad configuration: {err}{cause}", file=sys.stderr)
        return 2
    try:
        run(cfg)
    except (ValueError, FileNotFoundError, CheckpointWriteError) as err:
        print(f"tacotune: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
