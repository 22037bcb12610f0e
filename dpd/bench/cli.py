"""The ``dpd bench`` subcommand: a grid of runs against plain SB3, its statistics, table and plots.

A preset (``quick`` by default) gives every setting; flags replace single settings of it, so
``dpd bench --envs Hopper-v5 --seeds 0-4`` is the quick grid on Hopper with five seeds.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from dpd.bench.grid import METHODS, PRESETS, BenchRun, Grid, expand, parse_seeds, split_list
from dpd.errors import UserError, unknown_choice

BENCH_BACKENDS = ("process", "ray")


def add_bench_parser(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="benchmark dpd against plain SB3 at equal env steps: several seeds, IQM, bootstrap intervals, plots",
        description="Run a grid of (env, algo, method, seed) runs in parallel and write raw results, a markdown table "
        "and learning curves.",
    )
    bench.add_argument(
        "--preset",
        default="quick",
        help=f"base grid: {', '.join(PRESETS)} (default quick); the flags below replace its settings",
    )
    bench.add_argument("--envs", help="comma-separated env ids, e.g. HalfCheetah-v5,Hopper-v5")
    bench.add_argument("--algos", help="comma-separated SB3 algorithms, e.g. ppo,sac")
    bench.add_argument("--methods", help=f"comma-separated methods: {', '.join(METHODS)}")
    bench.add_argument("--seeds", help="seeds, e.g. 0-4 or 0,2,7")
    bench.add_argument("--total-steps", type=int, help="env steps of every run, summed over its learners")
    bench.add_argument("--peers", type=int, help="learners of the multi-peer methods (default 2)")
    bench.add_argument("--eval-every", type=int, help="total env steps between evaluations of a run")
    bench.add_argument("--eval-episodes", type=int, help="deterministic episodes per evaluation")
    bench.add_argument("--final-episodes", type=int, help="deterministic episodes of the final score")
    bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, e.g. distill.alpha=1.0 (repeatable)",
    )
    bench.add_argument(
        "--workers",
        type=int,
        help="runs at once, one single-threaded process each (default: number of cores; with --backend ray, every "
        "run, each waiting for a CPU of the cluster)",
    )
    bench.add_argument(
        "--backend",
        default="process",
        help="process (default: a local process pool) or ray (each run a Ray task; pip install '.[ray]')",
    )
    bench.add_argument(
        "--address", default="", help="with --backend ray: the Ray cluster's address (default: start a local instance)"
    )
    bench.add_argument(
        "--out",
        help="results directory (default results/bench-<preset>); rerunning skips complete runs and continues killed ones",
    )
    bench.add_argument("--report-only", action="store_true", help="only remake the table and plots from the results in --out")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=cmd_bench)


def grid_from(args: argparse.Namespace) -> Grid:
    if args.preset not in PRESETS:
        raise unknown_choice("preset", args.preset, PRESETS)
    changes: Dict[str, Any] = {
        "envs": split_list(args.envs) if args.envs else None,
        "algos": split_list(args.algos) if args.algos else None,
        "methods": split_list(args.methods) if args.methods else None,
        "seeds": parse_seeds(args.seeds) if args.seeds else None,
        "total_steps": args.total_steps,
        "peers": args.peers,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "final_episodes": args.final_episodes,
        "overrides": tuple(args.set) or None,
    }
    return dataclasses.replace(PRESETS[args.preset], **{key: value for key, value in changes.items() if value is not None})


def cmd_bench(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers <= 0:
        raise UserError(f"--workers must be positive, got {args.workers}")
    if args.backend not in BENCH_BACKENDS:
        raise unknown_choice("bench backend", args.backend, BENCH_BACKENDS)
    grid = grid_from(args)
    out = Path(args.out or f"results/bench-{args.preset}")
    runs = expand(grid)  # every run's config, env and action space checked: nothing is written before
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory for the results")
    command = "dpd " + " ".join(args.argv)
    if args.report_only:
        from dpd.bench.results import completed_result

        rows = [row for row in (completed_result(out, run) for run in runs) if row is not None]
        if not rows:
            raise UserError(f"no complete runs of this grid in {out}")
    else:
        from dpd.rundir import make_directory

        made = make_directory(out, "results directory")
        try:
            workers = args.workers or (len(runs) if args.backend == "ray" else os.cpu_count() or 1)
            rows = _run(runs, out, min(workers, len(runs)), not args.no_progress, args.backend, args.address)
        except UserError:  # refused before any run started (a cluster with other code): nothing written
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
            raise
        except KeyboardInterrupt:
            print(f"\ninterrupted; complete runs are kept in {out}: rerun the same command to continue", file=sys.stderr)
            return 130
    written = write_outputs(rows, out, command)
    failed = [row for row in rows if row["status"] != "ok"]
    print(
        f"{len(rows) - len(failed)} of {len(runs)} runs complete, {len(failed)} failed; wrote "
        f"{', '.join(str(p) for p in written)}"
    )
    print(f"TensorBoard: tensorboard --logdir {out}")
    if failed:
        print("rerun the same command to retry the failed runs (complete runs are skipped)", file=sys.stderr)
    return 1 if failed else 0


def _run(runs: List[BenchRun], out: Path, workers: int, progress: bool, backend: str, address: str) -> List[Dict[str, Any]]:
    from tqdm import tqdm

    from dpd.bench.runner import run_grid

    bar = tqdm(total=len(runs), unit="run", desc="dpd bench", disable=not progress, dynamic_ncols=True)

    def report(kind: str, run: BenchRun, row: Dict[str, Any]) -> None:
        if kind == "retried":
            tqdm.write(f"LOST    {run.key}: its Ray node died; running it again from its last checkpoint", file=sys.stderr)
            return
        bar.update(1)
        if kind == "failed":
            tqdm.write(f"FAILED  {run.key}: {row['error']}", file=sys.stderr)
        elif kind == "done":
            tqdm.write(f"done    {run.key}: score {row['score']:.1f} ({row['seconds']:.0f} s)")

    print(f"{len(runs)} runs, {workers} at a time, in {out}")
    try:
        return run_grid(runs, out, workers, report, backend=backend, address=address)
    finally:
        bar.close()


def write_outputs(rows: List[Dict[str, Any]], out: Path, command: str) -> List[Path]:
    """Raw rows (JSON lines and CSV), the markdown table and the learning curves."""
    from dpd.bench.report import markdown_table, plot_curves, write_csv
    from dpd.rundir import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "results.jsonl"
    atomic_write_text(jsonl, "".join(json.dumps(row) + "\n" for row in rows))
    csv_path = out / "results.csv"
    write_csv(rows, csv_path)
    table = out / "results.md"
    atomic_write_text(table, markdown_table(rows, date=time.strftime("%Y-%m-%d"), command=command))
    return [jsonl, csv_path, table, *plot_curves(rows, out)]
