"""Supervised KD table: every method beside the ``ce`` student, and the nuisance-teacher experiment.

For each task and seed one teacher is trained and every method distills it into a fresh student
(same seed, same teacher), so differences to ``ce`` are paired. Reported over seeds: mean and 95%
Student-t interval (mean +- t_{0.975, n-1} * sd / sqrt(n)) of test accuracy and test top-1
agreement, and of the paired difference to ``ce``. A method "beats ce" only where the interval of
its difference lies above zero.

Nuisance teacher (RID's claim): digits with label-independent noise columns; the same trained
teacher is used clean and with nuisance units added to its hidden layers (its predictions are
unchanged); ``fitnet`` matches all of a hidden layer, ``rid`` only what filters trained on the
label pass.

Single-threaded, one process: it uses one core. Writes the markdown to stdout and to --out.

    .venv/bin/python benchmarks/kd_table.py                    # the full table
    .venv/bin/python benchmarks/kd_table.py --seeds 2 --epochs 10 --out results/kd_quick.md
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy and torch load their thread pools

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, List, Sequence, Tuple  # noqa: E402

import torch  # noqa: E402
from scipy import stats  # noqa: E402

from dpd.kd.data import Dataset, load_dataset  # noqa: E402
from dpd.kd.experiment import KDReport, distill_and_measure  # noqa: E402
from dpd.kd.options import METHOD_NAMES, KDOptions, Schedule, SyntheticSpec  # noqa: E402
from dpd.kd.teachers import NuisanceTeacher, Teacher, train_teacher  # noqa: E402

TEACHER_NET = (256, 256)
STUDENT_NET = (16,)
NOISE_FEATURES = 32
NUISANCE_DIM = 256
NUISANCE_SCALE = 3.0


@dataclass(frozen=True)
class Task:
    label: str
    data: Dataset


def interval(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval (0 half-width for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / len(values) ** 0.5


def shown(values: Sequence[float], signed: bool = False) -> str:
    mean, half = interval(values)
    return f"{mean:+.4f} ± {half:.4f}" if signed else f"{mean:.4f} ± {half:.4f}"


def verdict(differences: Sequence[float]) -> str:
    mean, half = interval(differences)
    if mean - half > 0:
        return "beats ce"
    if mean + half < 0:
        return "below ce"
    return "no clear difference"


def method_table(task: Task, seeds: Sequence[int], epochs: int) -> Tuple[List[str], List[str], float]:
    """Rows of the markdown table for one task, the plain statements, and the seconds it took."""
    start = time.perf_counter()
    reports: Dict[str, List[KDReport]] = {method: [] for method in METHOD_NAMES}
    teacher_accuracy = []
    for seed in seeds:
        teacher = train_teacher(task.data, TEACHER_NET, "single", 1, Schedule(epochs), seed)
        for method in METHOD_NAMES:
            report, _ = distill_and_measure(task.data, teacher, method, STUDENT_NET, Schedule(epochs), seed, KDOptions())
            reports[method].append(report)
        teacher_accuracy.append(reports["ce"][-1].fidelity.teacher_accuracy)
        print(f"  {task.label} seed {seed} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    def accuracy(method: str) -> List[float]:
        return [r.fidelity.student_accuracy for r in reports[method]]

    def agreement(method: str) -> List[float]:
        return [r.fidelity.test.agreement for r in reports[method]]

    rows = [f"| {task.label} | teacher {','.join(map(str, TEACHER_NET))} | {shown(teacher_accuracy)} | | | | |"]
    statements = []
    for method in METHOD_NAMES:
        acc_diff = [a - c for a, c in zip(accuracy(method), accuracy("ce"))]
        agree_diff = [a - c for a, c in zip(agreement(method), agreement("ce"))]
        if method == "ce":
            rows.append(f"| {task.label} | ce | {shown(accuracy(method))} | — | {shown(agreement(method))} | — | baseline |")
            continue
        rows.append(
            f"| {task.label} | {method} | {shown(accuracy(method))} | {shown(acc_diff, signed=True)} | "
            f"{shown(agreement(method))} | {shown(agree_diff, signed=True)} | {verdict(acc_diff)} |"
        )
        if verdict(acc_diff) != "beats ce":
            statements.append(
                f"{task.label}: `{method}` does not beat `ce` on test accuracy ({verdict(acc_diff)}: "
                f"{shown(acc_diff, signed=True)})."
            )
    retrieval = reports["reaugkd"]
    statements.append(
        f"{task.label}: `reaugkd` student alone (no retrieval) "
        f"{shown([r.extras['student_alone_test_accuracy'] for r in retrieval])}; "
        f"retrieval overhead {statistics.fmean(r.extras['batch_retrieval_overhead_pct'] for r in retrieval):.0f}% per "
        "sample in a batch, "
        f"{statistics.fmean(r.extras['single_sample_retrieval_overhead_pct'] for r in retrieval):.0f}% for one sample "
        "at a time "
        f"({statistics.fmean(r.extras['single_sample_us_alone'] for r in retrieval):.1f} µs alone, "
        f"{statistics.fmean(r.extras['single_sample_us_retrieval'] for r in retrieval):.1f} µs with retrieval)."
    )
    return rows, statements, time.perf_counter() - start


def nuisance_table(seeds: Sequence[int], epochs: int) -> Tuple[List[str], float]:
    start = time.perf_counter()
    data = load_dataset("digits", noise_features=NOISE_FEATURES)
    results: Dict[Tuple[str, str], List[float]] = {}
    for seed in seeds:
        clean = train_teacher(data, TEACHER_NET, "single", 1, Schedule(epochs), seed)
        teachers: Dict[str, Teacher] = {
            "clean": clean,
            "nuisance": NuisanceTeacher(clean, data, NUISANCE_DIM, NUISANCE_SCALE, seed),
        }
        for teacher_name, teacher in teachers.items():
            for method in ("ce", "fitnet", "rid"):
                report, _ = distill_and_measure(data, teacher, method, STUDENT_NET, Schedule(epochs), seed, KDOptions())
                results.setdefault((method, teacher_name), []).append(report.fidelity.student_accuracy)
        print(f"  nuisance seed {seed} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    rows = []
    for method in ("ce", "fitnet", "rid"):
        clean, noisy = results[(method, "clean")], results[(method, "nuisance")]
        change = [n - c for n, c in zip(noisy, clean)]
        rows.append(f"| {method} | {shown(clean)} | {shown(noisy)} | {shown(change, signed=True)} |")
    return rows, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100, help="teacher and student epochs (default 100)")
    parser.add_argument("--out", default="results/kd_table.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    tasks = [
        Task("digits", load_dataset("digits")),
        Task(
            "synthetic",
            load_dataset("synthetic", synthetic=SyntheticSpec(samples=2000, features=20, classes=4, difficulty="medium")),
        ),
    ]
    lines = [
        f"Teacher MLP {','.join(map(str, TEACHER_NET))}, student MLP {','.join(map(str, STUDENT_NET))}, {args.epochs} "
        "epochs each (Adam 1e-3, batch 64), "
        f"seeds {seeds[0]}..{seeds[-1]} (one teacher per seed, shared by all methods), method options at their defaults. "
        "Test split: 25%, split seed 0. Cells: mean ± half-width of the 95% Student-t interval over seeds; "
        "Δ: paired difference to `ce` (same seed and teacher).",
        "",
        "| task | method | test accuracy | Δ accuracy vs ce | test agreement | Δ agreement vs ce | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    statements, timings = [], []
    for task in tasks:
        rows, said, seconds = method_table(task, seeds, args.epochs)
        lines += rows
        statements += said
        timings.append(f"{task.data.describe()} {seconds:.0f} s")
    nuisance_rows, nuisance_seconds = nuisance_table(seeds, args.epochs)
    timings.append(f"nuisance experiment {nuisance_seconds:.0f} s")
    lines += [
        "",
        f"Nuisance teacher: digits + {NOISE_FEATURES} label-independent noise columns; the teacher's two hidden layers get "
        f"{NUISANCE_DIM} extra units each, {NUISANCE_SCALE:g} x the layer's RMS, tanh of a random projection of the "
        "noise columns "
        "(its predictions unchanged). Student test accuracy:",
        "",
        "| method | clean teacher | nuisance teacher | change |",
        "| --- | --- | --- | --- |",
        *nuisance_rows,
        "",
        *[f"- {statement}" for statement in statements],
        "",
        f"Wall-clock {time.perf_counter() - start:.0f} s on one core, single-threaded torch: {'; '.join(timings)}.",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
