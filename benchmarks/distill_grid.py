"""The teacher-student benchmark: trained teachers taught to students by each mode, at each size.

A grid of ``dpd distill`` runs (tasks x modes x student sizes x seeds, one variant of settings
per ``--label``), each a run directory under ``--out``; a grid that was killed continues where
it stopped (finished runs are skipped, interrupted ones resume from their last checkpoint), so
it can span sessions and machines. Teachers are files (``benchmarks/teachers.py`` makes the zoo
ones); no teacher is trained inside the grid.

    python benchmarks/distill_grid.py run --teachers results/teachers/teachers.json \\
        --envs HalfCheetah-v5,Hopper-v5,Walker2d-v5 --modes bc,dagger,online --nets 32,32 --seeds 0 \\
        --total-steps 100000 --eval-every 2500 --workers 2 --out results/distill
    python benchmarks/distill_grid.py plan --teachers results/teachers/teachers.json --workers 2 \
        --out results/distill [--parts headline,screen,sizes,modes] [--envs ...]
    python benchmarks/distill_grid.py report results/distill [--plot results/distill/ratio.png]

``plan`` runs the benchmark's plan in one pool, in order: ``headline`` (dpd's default, DAgger
with the settings ``imitation``'s ``SimpleDAggerTrainer`` uses, and ``bc``: 32x32 students, five
seeds, 25k env steps), ``screen`` (the other modes, one seed, 50k), ``sizes`` (dpd's default
with 64x64, 16x16 and linear students, five seeds, 25k) and ``modes`` (five seeds of ``bc`` at
64x64 and 16x16, 25k, and of the screen's best two modes, ``offline`` and ``online``, at 64x64,
32x32 and 16x16, 50k).

The report gives, per task and (mode, student size, label): the return ratio student / teacher
(deterministic episodes; IQM over seeds with its 95% bootstrap interval) at fixed env steps, the
env steps each seed first reaches 0.95 and 0.99 of the teacher (``--reach`` names other ratios;
IQM; "not reached" where a seed never does), policy parameters, action agreement and KL on the teacher's states at the end,
gradient steps and minutes. The teacher's return is the run's own final measurement of it, on
the student's final-evaluation episodes.
"""

import argparse
import json
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

RATIO_AT = (5_000, 10_000, 25_000, 50_000, 100_000)
THRESHOLDS = (0.95, 0.99)  # the report's "steps to" columns unless --reach names others


@dataclass(frozen=True)
class DistillRun:
    env: str
    teacher: str  # the teacher's zip
    mode: str
    net: str  # hidden sizes, e.g. "32,32"; "none": a linear policy
    seed: int
    label: str
    total_steps: int
    eval_every: int
    eval_episodes: int
    student_algo: str
    overrides: Tuple[str, ...]
    hyperparams: str = ""  # an RL-zoo entry (FILE.yml:ENTRY) under the run's own settings, as dpd distill --hyperparams

    @property
    def name(self) -> str:
        return f"{self.env}/{self.mode}-{self.net.replace(',', 'x')}-{self.label}/seed{self.seed}"


def net_arch(net: str) -> List[int]:
    return [] if net == "none" else [int(size) for size in net.split(",")]


def config_layer(run: DistillRun) -> Dict[str, Any]:
    from dpd.config import merge, parse_overrides

    layer = {
        "env": run.env,
        "algo": run.student_algo,
        "peers": 1,
        "total_steps": run.total_steps,
        "seed": run.seed,
        "checkpoint_every": max(1, run.total_steps // 5),
        "eval": {"every": run.eval_every, "episodes": run.eval_episodes},
        "teacher": {"path": run.teacher, "mode": run.mode},
        "algo_kwargs": {"policy_kwargs": {"net_arch": net_arch(run.net)}},
    }
    if run.hyperparams:
        from dpd.agents.algorithms import ALGORITHMS
        from dpd.zoo import zoo_layer

        layer = merge(zoo_layer(run.hyperparams, run.env, ALGORITHMS)[0], layer)
    return merge(layer, parse_overrides(list(run.overrides)))


def execute(run: DistillRun, out: Path) -> str:
    """Train one run (or continue it); a line saying how it went."""
    import torch

    from dpd.agents import new_run, open_run
    from dpd.config import build_config

    torch.set_num_threads(1)
    path = out / run.name
    manifest = path / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text())["progress"].get("finished"):
        return f"{run.name}: done before"
    start = time.perf_counter()
    trainer = open_run(path) if manifest.is_file() else new_run(path, build_config(config_layer(run)))
    try:
        trainer.train(progress_bar=False)
    finally:
        trainer.close()
    return f"{run.name}: {(time.perf_counter() - start) / 60:.1f} min"


def _execute(args: Tuple[DistillRun, Path]) -> str:
    try:
        return execute(*args)
    except Exception as exc:  # one failed run must not stop the grid
        return f"{args[0].name}: FAILED {type(exc).__name__}: {exc}"


def parse_seeds(text: str) -> List[int]:
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(seed) for seed in text.split(",")]


def teacher_files(path: Path) -> Dict[str, str]:
    """env id -> teacher zip, from ``benchmarks/teachers.py``'s ``teachers.json`` (the PPO 1M teachers)."""
    rows = json.loads(path.read_text())
    return {row["env"]: row["zip"] for row in rows if row["teacher"] == f"ppo-{row['env'].split('-')[0]}"}


# DAgger as ``imitation`` (1.0) runs it by default: rounds of at least 3 episodes and 500 steps
# (3000 steps on these tasks), 4 epochs of BC in batches of 32, its log-likelihood loss.
IMITATION_DAGGER = ("teacher.round_steps=3000", "teacher.epochs=4", "distill.batch=32", "distill.loss=nll")
PLAN_PARTS = ("headline", "screen", "sizes", "modes")


def plan(teachers: Dict[str, str], envs: Sequence[str], parts: Sequence[str]) -> List[DistillRun]:
    """The benchmark's runs, the headline first."""
    runs: List[DistillRun] = []

    def add(env: str, mode: str, net: str, seeds: Sequence[int], label: str, steps: int, overrides=()) -> None:
        runs.extend(
            DistillRun(env, teachers[env], mode, net, s, label, steps, 2500, 5, "ppo", tuple(overrides)) for s in seeds
        )

    five = range(5)
    if "headline" in parts:
        for env in envs:
            add(env, "dagger", "32,32", five, "default", 25_000)
            add(env, "dagger", "32,32", five, "imitation", 25_000, IMITATION_DAGGER)
            add(env, "bc", "32,32", five, "default", 25_000)
    if "screen" in parts:
        for env in envs:
            for mode in ("offline", "online", "kickstart", "gated", "ppd"):
                add(env, mode, "32,32", [0], "default", 50_000)
    if "sizes" in parts:
        for env in envs:
            for net in ("64,64", "16,16", "none"):
                add(env, "dagger", net, five, "default", 25_000)
    if "modes" in parts:  # five seeds of bc and of the screen's best two modes at dagger's three sizes, 32x32 first
        for net in ("32,32", "64,64", "16,16"):
            for env in envs:
                if net != "32,32":  # bc's 32x32 is in the headline
                    add(env, "bc", net, five, "default", 25_000)
                for mode in ("offline", "online"):
                    add(env, mode, net, five, "default", 50_000)
    return runs


def run_all(runs: Sequence[DistillRun], out: Path, workers: int) -> None:
    print(f"{len(runs)} runs, {workers} workers, into {out}", flush=True)
    with multiprocessing.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        for line in pool.imap_unordered(_execute, [(run, out) for run in runs]):
            print(line, flush=True)


def cmd_plan(args: argparse.Namespace) -> None:
    teachers = teacher_files(Path(args.teachers))
    envs = args.envs.split(",") if args.envs else sorted(teachers)
    parts = args.parts.split(",")
    unknown = [part for part in parts if part not in PLAN_PARTS]
    if unknown or any(env not in teachers for env in envs):
        sys.exit(f"parts: {', '.join(PLAN_PARTS)}; envs with a teacher: {', '.join(sorted(teachers))}")
    run_all(plan(teachers, envs, parts), Path(args.out), args.workers)


def cmd_run(args: argparse.Namespace) -> None:
    teachers = teacher_files(Path(args.teachers)) if args.teachers else {}
    for given in args.teacher or []:
        env, _, zip_path = given.partition("=")
        teachers[env] = zip_path
    envs = args.envs.split(",")
    missing = [env for env in envs if env not in teachers]
    if missing:
        sys.exit(f"no teacher for {', '.join(missing)}: give --teachers FILE.json or --teacher ENV=ZIP")
    runs = [
        DistillRun(
            env,
            teachers[env],
            mode,
            net,
            seed,
            args.label,
            args.total_steps,
            args.eval_every,
            args.eval_episodes,
            args.student_algo,
            tuple(args.set or []),
            args.hyperparams,
        )  # fmt: skip
        for env in envs
        for mode in args.modes.split(",")
        for net in args.nets.split(";")
        for seed in parse_seeds(args.seeds)
    ]
    run_all(runs, Path(args.out), args.workers)


# ----- the report -----------------------------------------------------------------------------


@dataclass
class RunResult:
    env: str
    variant: str  # mode-net-label
    seed: int
    curve: List[Tuple[int, float]]  # (student env steps, ratio to the teacher)
    final_ratio: float
    teacher_return: float
    parameters: Dict[str, int]
    agreement: float
    kl: float
    gradient_steps: Optional[int]
    minutes: float


def read_run(path: Path) -> Optional[RunResult]:
    manifest = json.loads((path / "manifest.json").read_text())
    progress = manifest["progress"]
    if not progress.get("finished"):
        return None
    (final,) = progress["final_eval"]
    metrics = final["metrics"]
    teacher_return = metrics["fidelity/teacher_return"]
    curve = [(e["env_steps"], e["mean_return"] / teacher_return) for e in progress["evaluations"]]
    curve.append((final["env_steps"], final["mean_return"] / teacher_return))
    return RunResult(
        env=path.parent.parent.name,
        variant=path.parent.name,
        seed=int(path.name.removeprefix("seed")),
        curve=curve,
        final_ratio=final["mean_return"] / teacher_return,
        teacher_return=teacher_return,
        parameters=manifest.get("policy_parameters", {}),
        agreement=metrics.get("fidelity/teacher_states/agreement", math.nan),
        kl=metrics.get("fidelity/teacher_states/kl", math.nan),
        gradient_steps=_gradient_steps(path),
        minutes=progress.get("train_seconds", math.nan) / 60,
    )


def _gradient_steps(path: Path) -> Optional[int]:
    """The student's distillation steps, summed from its TensorBoard scalars (``distill/gradient_steps``
    per round in bc and dagger); None where the mode does not log them."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    total, found = 0, False
    for events in sorted((path / "tb").rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if "distill/gradient_steps" in accumulator.Tags().get("scalars", []):
            found = True
            total += int(sum(event.value for event in accumulator.Scalars("distill/gradient_steps")))
    return total if found else None


def ratio_at(curve: Sequence[Tuple[int, float]], steps: int) -> float:
    """The ratio of the last evaluation at or before ``steps``; NaN before the first, and past
    the run's end (a shorter run says nothing of later steps)."""
    before = [ratio for at, ratio in curve if at <= steps]
    return before[-1] if before and curve[-1][0] >= steps else math.nan


def steps_to(curve: Sequence[Tuple[int, float]], threshold: float) -> float:
    """The env steps of the first evaluation at or above ``threshold`` (infinity: never)."""
    return next((float(at) for at, ratio in curve if ratio >= threshold), math.inf)


def summarise(values: Sequence[float]) -> str:
    from dpd.bench.stats import bootstrap_interval, iqm

    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    if len(finite) == 1:
        return f"{finite[0]:.3f}"
    low, high = bootstrap_interval([np.asarray(finite)])
    return f"{iqm(finite):.3f} [{low:.2f}, {high:.2f}]"


def reach(values: Sequence[float]) -> str:
    from dpd.bench.stats import iqm

    if any(math.isinf(v) for v in values):
        reached = sum(1 for v in values if math.isfinite(v))
        return f"not reached ({reached}/{len(values)})"
    return f"{iqm(values) / 1000:.1f}k"


def cmd_report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    results = [
        r for path in sorted(out.glob("*/*/seed*")) if (path / "manifest.json").is_file() for r in [read_run(path)] if r
    ]
    if args.only:  # variants whose name holds one of the given parts
        results = [r for r in results if any(part in r.variant for part in args.only.split(","))]
    by_key: Dict[Tuple[str, str], List[RunResult]] = {}
    for result in results:
        by_key.setdefault((result.env, result.variant), []).append(result)
    at = tuple(int(float(step)) for step in args.at.split(",")) if args.at else RATIO_AT
    steps = [s for s in at if any(r.curve[-1][0] >= s for r in results)]
    thresholds = tuple(float(ratio) for ratio in args.reach.split(",")) if args.reach else THRESHOLDS
    for env in sorted({r.env for r in results}):
        teacher = [r.teacher_return for (e, _), rs in by_key.items() if e == env for r in rs]
        parameters = results[0].parameters.get("teacher", "?")
        print(f"\n### {env} (teacher return {np.mean(teacher):.1f}, its policy parameters {parameters})\n")
        header = ["mode-net-label", "seeds", *[f"ratio @{s // 1000}k" for s in steps], "final ratio"]
        header += [f"steps to {t}" for t in thresholds] + ["student params", "agreement", "KL", "grad steps", "minutes"]
        print("| " + " | ".join(header) + " |")
        print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
        for (e, variant), rs in sorted(by_key.items()):
            if e != env:
                continue
            grads = [r.gradient_steps for r in rs if r.gradient_steps is not None]
            cells = [variant, str(len(rs))]
            cells += [summarise([ratio_at(r.curve, s) for r in rs]) for s in steps]
            cells.append(summarise([r.final_ratio for r in rs]))
            cells += [reach([steps_to(r.curve, t) for r in rs]) for t in thresholds]
            cells += [
                str(rs[0].parameters.get("student", "?")),
                f"{np.mean([r.agreement for r in rs]):.3f}",
                f"{np.mean([r.kl for r in rs]):.3f}",
                f"{np.mean(grads):.0f}" if grads else "-",
                f"{np.mean([r.minutes for r in rs]):.1f}",
            ]
            print("| " + " | ".join(cells) + " |")
    if args.plot:
        plot(by_key, Path(args.plot))


def plot(by_key: Dict[Tuple[str, str], List[RunResult]], path: Path) -> None:
    """Return ratio against env steps, one panel per task, one line per variant (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({env for env, _ in by_key})
    figure, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 4), squeeze=False)
    for axis, env in zip(axes[0], envs):
        series: Dict[str, List[Tuple[int, float]]] = {}
        for (e, variant), rs in sorted(by_key.items()):
            if e != env:
                continue
            if variant.startswith("bc-"):  # each bc run is one point: its data set's size; one line over the sizes
                name = variant.rsplit("-", 1)[0] + " (data size)"
                series.setdefault(name, []).append((rs[0].curve[-1][0], float(np.nanmean([r.final_ratio for r in rs]))))
                continue
            grid = sorted({at for r in rs for at, _ in r.curve})
            series[f"{variant} ({len(rs)})"] = [(at, float(np.nanmean([ratio_at(r.curve, at) for r in rs]))) for at in grid]
        for name, points in series.items():
            points.sort()
            axis.plot([at for at, _ in points], [ratio for _, ratio in points], marker="o", markersize=2, label=name)
        axis.axhline(1.0, color="grey", lw=0.5)
        axis.set_ylim(-0.2, 1.2)
        axis.set_title(env)
        axis.set_xlabel("student env steps")
        axis.set_ylabel("return / teacher's")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or continue) a grid")
    run.add_argument("--teachers", help="teachers.json of benchmarks/teachers.py")
    run.add_argument("--teacher", action="append", metavar="ENV=ZIP", help="a teacher by hand (repeatable)")
    run.add_argument("--envs", default="HalfCheetah-v5,Hopper-v5,Walker2d-v5")
    run.add_argument("--modes", default="bc,dagger,offline,online,kickstart,gated")
    run.add_argument("--nets", default="32,32", help="student sizes separated by ';', e.g. '64,64;32,32;16,16;none'")
    run.add_argument("--seeds", default="0")
    run.add_argument("--label", default="default", help="names this variant of settings (--set) in the report")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for every run")
    run.add_argument("--student-algo", default="ppo")
    run.add_argument("--hyperparams", default="", metavar="FILE.yml:ENTRY", help="the student's RL-zoo entry (as dpd distill)")
    run.add_argument("--total-steps", type=int, default=100_000)
    run.add_argument("--eval-every", type=int, default=2_500)
    run.add_argument("--eval-episodes", type=int, default=5)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--out", default="results/distill")
    planned = commands.add_parser("plan", help="run (or continue) the benchmark's plan")
    planned.add_argument("--teachers", required=True, help="teachers.json of benchmarks/teachers.py")
    planned.add_argument("--envs", help="default: every task with a teacher")
    planned.add_argument("--parts", default=",".join(PLAN_PARTS))
    planned.add_argument("--workers", type=int, default=2)
    planned.add_argument("--out", default="results/distill")
    report = commands.add_parser("report", help="the tables (and a plot) of a grid's finished runs")
    report.add_argument("out")
    report.add_argument("--plot", help="PNG of the return ratio against env steps")
    report.add_argument("--only", help="variants whose name holds one of these comma-separated parts, e.g. 32x32")
    report.add_argument("--at", help="env steps of the ratio columns, comma-separated (default: 5k to 100k), e.g. 250e3,500e3")
    report.add_argument(
        "--reach", help="ratios of the 'steps to' columns, comma-separated (default: 0.95,0.99), e.g. 0.9,0.95"
    )
    args = parser.parse_args()
    {"run": cmd_run, "plan": cmd_plan, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    main()
