"""The ``dpd`` command line: train, distill, fidelity, eval, export, kd, bench, losses and config.

User errors (``UserError``) end in one line on stderr and exit code 2, with nothing written.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from dpd.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_PEER_FAILED = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _single_thread() -> None:
    """One torch thread per process: small MLPs are fastest so, and peers stay on one core."""
    import torch

    torch.set_num_threads(1)


def _print_results(results: List[Any], as_json: bool) -> None:
    from dataclasses import asdict

    if as_json:
        print(json.dumps([asdict(result) for result in results], indent=2))
        return
    print(f"{'learner':<10}{'algo':<6}{'env steps':>12}  deterministic return")
    for r in results:
        print(
            f"{r.learner:<10}{r.algo:<6}{r.env_steps:>12}  {r.mean_return:10.1f} +- {r.std_return:.1f} ({r.episodes} episodes)"
        )
        for key, value in r.metrics.items():
            print(f"    {key:<40}{value:12.4f}")


def _train_config(args: argparse.Namespace) -> Dict[str, Any]:
    """Config layers from --hyperparams, --config, --set and explicit flags (later wins)."""
    from dpd.config import load_yaml, merge, parse_overrides

    layer: Dict[str, Any] = load_yaml(args.config) if args.config else {}
    layer = merge(layer, parse_overrides(args.set or []))
    if args.hyperparams:
        layer = merge(_zoo_layer(args.hyperparams, args.env or layer.get("env")), layer)
    flags = {
        "env": args.env,
        "gym_packages": ",".join(args.gym_packages) if args.gym_packages else None,
        "algo": args.algo,
        "peers": args.peers,
        "total_steps": args.total_steps,
        "seed": args.seed,
        "backend": _backend(args),
        "ray_address": getattr(args, "address", None),
    }
    return merge(layer, {key: value for key, value in flags.items() if value is not None})


def _zoo_layer(path: str, env: Optional[str]) -> Dict[str, Any]:
    """The entry for ``env`` of an RL-zoo hyperparameter file, as the lowest config layer."""
    from dpd.zoo import split_entry

    if not isinstance(env, str) and split_entry(path)[1] is None:
        raise UserError(
            "--hyperparams takes the entry of the env: give --env (or env in --config), or name it: FILE.yml:ENTRY"
        )
    from dpd.agents.algorithms import ALGORITHMS
    from dpd.zoo import zoo_layer

    layer, entry = zoo_layer(path, env or "", ALGORITHMS)
    print(f"hyperparameters: {entry}")
    return layer


def _backend(args: argparse.Namespace) -> Optional[str]:
    """``--backend`` if given, ``process`` for a bare ``--parallel``."""
    backend = getattr(args, "backend", None)
    if backend is None and getattr(args, "parallel", False):
        return "process"
    if backend == "local" and getattr(args, "parallel", False):
        raise UserError("--parallel contradicts --backend local")
    return backend


def cmd_train(args: argparse.Namespace, config_layers: Callable[[argparse.Namespace], Dict[str, Any]] = _train_config) -> int:
    if args.resume:
        given = [
            flag
            for flag, value in (
                ("--config", args.config),
                ("--hyperparams", args.hyperparams),
                ("--set", args.set),
                ("--env", args.env),
                ("--gym-packages", args.gym_packages),
                ("--algo", args.algo),
                ("--peers", args.peers),
                ("--total-steps", args.total_steps),
                ("--seed", args.seed),
                ("--run-dir", args.run_dir),
            )
            if value
        ]
        if given:
            raise UserError(f"--resume takes the config from the run dir; drop {', '.join(given)}")
    _single_thread()
    from dpd.agents import new_run, open_run
    from dpd.agents.peer import PeerFailure
    from dpd.config import build_config
    from dpd.rundir import CheckpointError

    if args.resume:
        trainer = open_run(Path(args.resume), backend=_backend(args))
        if trainer.finished:
            trainer.close()
            print(
                f"run {args.resume} is already complete ({trainer.run.manifest['progress']['run_steps']} env steps); "
                f"see dpd eval {args.resume}"
            )
            return 0
        print(f"resuming {args.resume} at {trainer.group.run_steps} of {trainer.cfg.total_steps} env steps")
    else:
        cfg = build_config(config_layers(args))
        run_dir = Path(args.run_dir or _default_run_dir(cfg.env, cfg.algo, cfg.peers, cfg.seed))
        trainer = new_run(run_dir, cfg)
        if cfg.teacher.path:
            from dpd.agents.teacher_loading import teacher_files

            sizes = trainer.run.manifest["policy_parameters"]
            teachers = ", ".join(str(path) for path, _ in teacher_files(cfg.teacher)) or cfg.teacher.path
            if "teacher" in sizes:
                fewer = sizes["teacher"] / sizes["student"]
                parameters = f"teacher {sizes['teacher']}, student {sizes['student']} ({fewer:.1f}x fewer)"
            else:  # recorded demonstrations
                parameters = f"student {sizes['student']}"
            print(
                f"{cfg.algo} student of {teachers} on {cfg.env}, {cfg.total_steps} env steps ({cfg.teacher.mode}), "
                f"run dir {run_dir}\npolicy parameters: {parameters}"
            )
        else:
            mode = "DPD" if cfg.distill.enabled and cfg.peers > 1 else "no distillation"
            mode += ", shared experience" if cfg.share.enabled else ""
            mode += f", guide={cfg.guide.mode}" if cfg.guide.mode != "none" else ""
            print(f"{cfg.peers} x {cfg.algo} on {cfg.env}, {cfg.total_steps} total env steps ({mode}), run dir {run_dir}")
    try:
        results = trainer.train(progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; checkpoint saved. Continue with: dpd train --resume {trainer.run.path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PeerFailure as failure:
        if failure.node_lost:  # Trainer.NODE_LOSSES lost nodes already: the cluster is not holding up
            back = "all peers go back to their last checkpoint"
        elif trainer.keeps_survivors:
            back = f"the other peers were checkpointed, {failure.name} goes back to its last checkpoint"
        elif len(trainer.group.learners) > 1:
            back = "the peers share experience, so all go back to their last checkpoint"
        else:
            back = f"{failure.name} goes back to its last checkpoint"
        print(
            f"dpd: error: {failure}; {back}. Continue with: dpd train --resume {trainer.run.path}",
            file=sys.stderr,
        )
        return EXIT_PEER_FAILED
    except CheckpointError as exc:
        print(
            f"dpd: error: {exc}; the run keeps its last complete checkpoint. Continue with: dpd train --resume "
            f"{trainer.run.path}",
            file=sys.stderr,
        )
        return EXIT_PEER_FAILED
    finally:
        trainer.close()
    _print_results(results, as_json=False)
    print(f"checkpoints: {trainer.run.path / 'checkpoints'} (the latest is what dpd eval {trainer.run.path} evaluates)")
    print(f"TensorBoard: {_tensorboard_command()} --logdir {trainer.run.path / 'tb'}")
    return 0


def _default_run_dir(env: str, algo: str, peers: int, seed: int) -> str:
    """``runs/<env>_<algo>_x<peers>_seed<seed>_<time>``, one folder even for ids with a namespace
    (``ns/Env-v0``) or a module (``module:EnvClass``)."""
    name = env.replace("/", "-").replace(":", "-")
    return f"runs/{name}_{algo.replace(',', '+')}_x{peers}_seed{seed}_{time.strftime('%Y%m%d-%H%M%S')}"


def _tensorboard_command() -> str:
    """The ``tensorboard`` beside this Python (the venv's), which works without activating it."""
    beside = Path(sys.executable).parent / "tensorboard"
    return str(beside) if beside.is_file() else "tensorboard"


def _distill_config(args: argparse.Namespace) -> Dict[str, Any]:
    """``dpd distill`` flags as config layers: one student (peers=1) and its teacher."""
    from dpd.config import merge

    layer = _train_config(args)
    teacher = {"path": args.teacher, "norm": args.teacher_norm, "algo": args.teacher_algo, "mode": args.mode}
    layer = merge(layer, {"peers": 1, "teacher": {key: value for key, value in teacher.items() if value is not None}})
    if args.student_net is not None:
        layer = merge(layer, {"algo_kwargs": {"policy_kwargs": {"net_arch": student_net(args.student_net)}}})
    return layer


def student_net(text: str) -> List[int]:
    """``--student-net``: hidden layer sizes (``64,64``, down to ``8``), or ``none`` for a linear policy."""
    if text.strip().lower() == "none":
        return []
    try:
        net = [int(size) for size in text.split(",")]
    except ValueError:
        net = []
    if not net or min(net) <= 0:
        raise UserError(f"--student-net expects positive layer sizes like 64,64, or none (a linear policy), got {text!r}")
    return net


def cmd_distill(args: argparse.Namespace) -> int:
    args.algo, args.peers = args.student_algo, None
    return cmd_train(args, _distill_config)


def cmd_fidelity(args: argparse.Namespace) -> int:
    if args.episodes <= 0 or args.states <= 0:
        raise UserError("--episodes and --states must be positive")
    if not 0 < args.tolerance < float("inf"):  # NaN fails too
        raise UserError(f"--tolerance must be a positive number of [-1, 1] action units, got {args.tolerance}")
    _single_thread()
    from dpd.agents import compare_models

    report = compare_models(
        args.teacher,
        args.student,
        args.env,
        args.teacher_norm,
        args.student_norm,
        args.episodes,
        args.states,
        args.tolerance,
        gym_packages=",".join(args.gym_packages or []),
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:<40}{'n/a' if value is None else f'{value:.4f}':>12}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.episodes <= 0:
        raise UserError(f"--episodes must be positive, got {args.episodes}")
    _single_thread()
    from dpd.agents import evaluate_run

    _print_results(evaluate_run(Path(args.run_dir), args.episodes), as_json=args.json)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if args.zoo is not None:
        if args.norm or args.env:
            raise UserError("--zoo exports a dpd run as it was trained; --norm and --env go with --onnx")
        from dpd.zoo_export import enjoy_command, export_zoo

        experiment, gym_packages = export_zoo(source, Path(args.zoo), args.learner)
        print(f"wrote {experiment} in the RL zoo's layout; run it with: {enjoy_command(experiment, gym_packages)}")
        return 0
    if not source.exists():
        raise UserError(f"not found: {source} (give a dpd run dir or an SB3 model zip)")
    _single_thread()
    from dpd.agents.onnx_export import TOLERANCE, ExportCheckFailed, export_source

    try:
        check = export_source(
            source,
            Path(args.onnx),
            args.learner,
            Path(args.norm) if args.norm else None,
            args.env,
            ",".join(args.gym_packages or []),
            args.states,
        )
    except ExportCheckFailed as failure:
        print(f"dpd: error: {failure}", file=sys.stderr)
        return EXIT_PEER_FAILED
    print(
        f"wrote {args.onnx}: observation -> deterministic action, {check.us_per_action:.1f} us per action "
        f"(onnxruntime, batch 1, one thread)"
    )
    print(
        f"checked: max |action - SB3 predict| = {check.max_abs_difference:.2g} <= {TOLERANCE:g} on {check.states} "
        f"states from {check.state_source}"
    )
    return 0


def cmd_losses(args: argparse.Namespace) -> int:
    from dpd.losses import loss_specs

    specs = loss_specs()
    if args.json:
        print(json.dumps([{"name": s.name, "kind": s.kind, "description": s.description} for s in specs], indent=2))
        return 0
    for spec in specs:
        print(f"{spec.name:<12}{spec.kind:<12}{spec.description}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from dpd.config import config_markdown, config_table

    if args.markdown:
        print(config_markdown(), end="")
        return 0
    rows = list(config_table())
    if args.json:
        print(json.dumps([{"key": key, "default": default, "meaning": meaning} for key, default, meaning in rows], indent=2))
        return 0
    width = max(len(key) for key, _, _ in rows) + 2
    for key, default, meaning in rows:
        print(f"{key:<{width}}{default.replace('`', '')}")
        print(f"{'':<{width}}{meaning.replace('`', '')}")
    return 0


def _config_keys_epilog() -> str:
    """The end of ``dpd train --help``: every config key, and where their meaning is listed."""
    from dpd.config import config_keys

    return (
        "config keys (--config FILE.yaml, --set KEY=VALUE): "
        + ", ".join(config_keys())
        + ". 'dpd config' lists each key's default and meaning."
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``train`` and ``distill``."""
    parser.add_argument(
        "--env", help="Gymnasium env id (default HalfCheetah-v5), or module:EnvClass for a gymnasium.Env class"
    )
    parser.add_argument(
        "--gym-packages",
        nargs="+",
        metavar="PKG",
        help="modules to import before the env id is looked up (packages that register envs on import), "
        "space- or comma-separated, as in rl_zoo3.train",
    )
    parser.add_argument("--total-steps", type=int, help="env steps of all learners together (default 1000000)")
    parser.add_argument("--seed", type=int, help="base seed; peer k uses seed + k * seed_offset")
    parser.add_argument("--run-dir", help="where logs and checkpoints go (default runs/<env>_<algo>_..._<time>)")
    parser.add_argument("--config", help="YAML file of config keys (see config.yaml in any run dir, and dpd config)")
    parser.add_argument(
        "--hyperparams",
        metavar="FILE.yml[:ENTRY]",
        help="an RL-zoo hyperparameter file (a bare ppo.yml is the installed rl_zoo3's): its entry for --env "
        "(or default), or the ENTRY named (ppo.yml:HalfCheetah-v4, the zoo's tuning for HalfCheetah-v5), sets "
        "total_steps, n_envs, normalisation and algo_kwargs, under --config, --set and the flags",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. distill.alpha=0.75 (repeatable; the keys: dpd config)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from dpd import __version__
    from dpd.config import MAX_PEERS

    parser = _Parser(prog="dpd", description="Policy distillation for reinforcement learning on Stable-Baselines3.")
    parser.add_argument("--version", action="version", version=f"dpd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a group of peers (Dual Policy Distillation)", epilog=_config_keys_epilog())
    train.add_argument(
        "--algo",
        help="SB3 algorithm of the peers: ppo, a2c, sac, td3, ddpg, or a list such as ppo,sac cycled over the peers "
        "(default ppo)",
    )
    train.add_argument("--peers", type=int, help=f"number of peers (default 2, at most {MAX_PEERS})")
    _add_run_arguments(train)
    train.add_argument(
        "--parallel", action="store_true", help="each peer in its own process, one core each (same results as sequential)"
    )
    train.add_argument(
        "--backend", help="where peers live: local (default), process (= --parallel) or ray (pip install '.[ray]')"
    )
    train.add_argument("--address", help="with --backend ray: the Ray cluster's address (default: start a local instance)")
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run (of train or distill) from its last checkpoint; --parallel/--backend may "
        "change where its peers live",
    )
    train.set_defaults(handler=cmd_train)

    distill = sub.add_parser(
        "distill", help="distill a trained SB3 model (the teacher) into a student", epilog=_config_keys_epilog()
    )
    distill.add_argument(
        "--teacher",
        required=True,
        help="the teacher's SB3 zip (from dpd, plain SB3 or the RL zoo), a dpd run directory (its best learner), or "
        "minari:DATASET_ID, recorded demonstrations in Minari's local store (--mode bc)",
    )
    distill.add_argument(
        "--teacher-norm", help="its VecNormalize statistics (default: vecnormalize.pkl beside the zip, if any)"
    )
    distill.add_argument("--teacher-algo", help="its algorithm (default: detected from the zip)")
    distill.add_argument("--student-algo", default="ppo", help="the student's SB3 algorithm (default ppo)")
    distill.add_argument("--student-net", help="the student's hidden layer sizes, e.g. 64,64 or 8; none: a linear policy")
    distill.add_argument("--mode", help="bc, dagger (default), offline, online, kickstart, gated or ppd")
    _add_run_arguments(distill)
    distill.set_defaults(handler=cmd_distill, resume=None)

    fidelity = sub.add_parser("fidelity", help="how closely one saved model matches another")
    fidelity.add_argument("teacher", help="SB3 zip, or a dpd run directory (its best learner)")
    fidelity.add_argument("student", help="SB3 zip, or a dpd run directory (its best learner)")
    fidelity.add_argument("--env", required=True, help="Gymnasium env id, or module:EnvClass")
    fidelity.add_argument("--gym-packages", nargs="+", metavar="PKG", help="modules to import before the env id is looked up")
    fidelity.add_argument("--teacher-norm", help="default: vecnormalize.pkl beside the zip, if any")
    fidelity.add_argument("--student-norm", help="default: vecnormalize.pkl beside the zip, if any")
    fidelity.add_argument("--episodes", type=int, default=10, help="deterministic episodes for the return ratio")
    fidelity.add_argument("--states", type=int, default=1000, help="held-out states from each policy")
    fidelity.add_argument("--tolerance", type=float, default=0.1, help="agreement tolerance in [-1, 1] action units")
    fidelity.add_argument("--json", action="store_true")
    fidelity.set_defaults(handler=cmd_fidelity)

    evaluate = sub.add_parser("eval", help="deterministic return of each learner of a run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(handler=cmd_eval)

    export = sub.add_parser("export", help="a learner of a run (or an SB3 zip) as one ONNX graph, or in the RL zoo's layout")
    export.add_argument("source", metavar="RUN_DIR|MODEL.zip", help="a dpd run dir, or (with --onnx) any SB3 model zip")
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--onnx",
        metavar="FILE.onnx",
        help="one graph from the raw observation to the deterministic action in the env's units (normalisation and "
        "action clipping or squashing inside), checked against SB3 (needs pip install 'dpd[export]')",
    )
    target.add_argument(
        "--zoo",
        metavar="OUT_DIR",
        help="the RL zoo's log folder: writes OUT_DIR/<algo>/<env>_<id>/, which python -m rl_zoo3.enjoy -f OUT_DIR runs",
    )
    export.add_argument(
        "--learner", help="which learner, e.g. peer1 or student (default: the best final evaluation, else the first)"
    )
    export.add_argument("--norm", help="--onnx: the zip's VecNormalize statistics (default: vecnormalize.pkl beside it)")
    export.add_argument(
        "--env",
        help="--onnx: check on this env's states (a run's own env by default; a zip without it: states drawn "
        "from its normalisation statistics)",
    )
    export.add_argument("--gym-packages", nargs="+", metavar="PKG", help="modules to import before --env is looked up")
    export.add_argument("--states", type=int, default=10_000, help="--onnx: states the check compares on (default 10000)")
    export.set_defaults(handler=cmd_export)

    from dpd.kd.cli import add_kd_parser  # imports no torch: other commands stay fast

    add_kd_parser(sub)
    from dpd.bench.cli import add_bench_parser

    add_bench_parser(sub)

    losses = sub.add_parser("losses", help="list the loss registry")
    losses.add_argument("--json", action="store_true")
    losses.set_defaults(handler=cmd_losses)

    config = sub.add_parser("config", help="list the config keys of train and distill: default and meaning")
    shape = config.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="machine-readable output")
    shape.add_argument("--markdown", action="store_true", help="as docs/CONFIGURATION.md's table")
    config.set_defaults(handler=cmd_config)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for reports
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UserError as exc:
        print(f"dpd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
