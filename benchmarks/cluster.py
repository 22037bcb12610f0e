"""dpd bench on Ray clusters simulated on this machine (docs/RELIABILITY.md, "A Ray cluster").

    nice -n 10 python benchmarks/cluster.py                  # both parts
    nice -n 10 python benchmarks/cluster.py --part node-loss --grids 10
    nice -n 10 python benchmarks/cluster.py --part scaling

Node loss: a 3-node cluster (``SimulatedCluster``: a head and two workers of one CPU each, each
node with its own working and temp directories), an undisturbed grid of 8 tiny runs, then
``--grids`` grids of the same runs, in each of which one worker node is removed (killed, no
drain) at a seeded random moment (within the first 70% of the undisturbed grid's wall-clock,
while the nodes are busy) and a fresh node joins after the grid. Each grid must end with all 8
results under the driver's ``--out``, each run once; a run that was on the removed node starts
again on another from its last checkpoint (its resume state included), and every run, that one
too, must score exactly as in the undisturbed grid.

Scaling: a grid of 8 plain SB3 runs of about 10 s each on clusters of 1, 2 and 4 one-CPU nodes,
as ``--workers`` equal to the nodes submits them (a run is submitted when a CPU is free); its
wall-clock, and the driver's overhead per run: the seconds from the run's submission to its
result on the driver's disk, less the seconds the run took inside its task (its result row's
``seconds``: building, training, evaluating and saving). The first run on each Ray worker
process also imports torch and SB3 there.
"""

import argparse
import dataclasses
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from dpd.agents.ray_cluster import SimulatedCluster
from dpd.bench.grid import PRESETS, BenchRun, expand
from dpd.bench.pools import RayPool
from dpd.bench.runner import run_grid
from dpd.envs import TINY_ENV_ID

NODE_LOSS_GRID = dataclasses.replace(
    PRESETS["quick"],
    envs=(TINY_ENV_ID,),
    algos=("ppo",),
    methods=("sb3", "independent"),
    seeds=(0, 1, 2, 3),
    total_steps=4096,
    eval_every=1024,
    eval_episodes=1,
    final_episodes=2,
    overrides=("turn_steps=256",),  # a group checkpoints between rounds: several times per run
)
SCALING_GRID = dataclasses.replace(
    NODE_LOSS_GRID, methods=("sb3",), seeds=tuple(range(8)), total_steps=12288, eval_every=4096, overrides=()
)


class Timed:
    """When each run was first submitted (``RayPool.start``) and when its result was on the
    driver's disk (the grid's "done" event, once per run), and which runs were started again."""

    current: Optional["Timed"] = None  # the grid being timed

    def __init__(self) -> None:
        self.submitted: Dict[str, float] = {}
        self.done: Dict[str, float] = {}
        self.done_count: Dict[str, int] = {}
        self.retried: List[str] = []
        Timed.current = self

    @staticmethod
    def install() -> None:
        start = RayPool.start

        def timed_start(pool: RayPool, run: BenchRun, directory: Path) -> None:
            if Timed.current is not None:
                Timed.current.submitted.setdefault(run.key, time.perf_counter())
            start(pool, run, directory)

        RayPool.start = timed_start  # type: ignore[method-assign]

    def event(self, kind: str, run: BenchRun, row: Dict[str, Any]) -> None:
        if kind == "done":
            self.done[run.key] = time.perf_counter()
            self.done_count[run.key] = self.done_count.get(run.key, 0) + 1
        elif kind == "retried":
            self.retried.append(run.key)


def grid(
    cluster: SimulatedCluster, runs: List[BenchRun], out: Path, timed: Timed, workers: int = 0
) -> Dict[str, Dict[str, Any]]:
    """The runs on the cluster, at most ``workers`` at once (0: all submitted at once)."""
    rows = run_grid(runs, out, workers or len(runs), timed.event, backend="ray", address=cluster.address)
    return {row["method"] + f"/seed{row['seed']}": row for row in rows}


def node_loss(root: Path, grids: int, seed: int) -> None:
    import ray

    runs = expand(NODE_LOSS_GRID)
    cluster = SimulatedCluster(root / "nodes", nodes=3)
    rng = random.Random(seed)
    try:
        timed = Timed()
        started = time.perf_counter()
        reference = grid(cluster, runs, root / "reference", timed)
        seconds = time.perf_counter() - started
        print(f"undisturbed grid: {len(reference)} runs, {seconds:.1f} s")
        print(
            "| grid | node removed at (s) | runs lost | results under --out | each run once | scores identical "
            "| resumed (score vs undisturbed) |"
        )
        print("| ---: | ---: | ---: | ---: | --- | --- | --- |")
        complete = identical = 0
        for index in range(grids):
            timed = Timed()
            moment = rng.uniform(0.1, 0.7) * seconds  # while the nodes are busy
            victim = cluster.workers[0]
            timer = threading.Timer(moment, cluster.remove_node, args=(victim,))
            out = root / f"grid{index}"
            timer.start()
            rows = grid(cluster, runs, out, timed)
            timer.join()
            cluster.add_node()
            on_disk = sum(1 for run in runs if (out / run.key / "result.json").is_file())
            once = sorted(timed.done_count) == sorted(run.key for run in runs) and set(timed.done_count.values()) == {1}
            ok = all(row["status"] == "ok" for row in rows.values()) and on_disk == len(runs)
            resumed = {key: row for key, row in rows.items() if row.get("resumed_from", 0) > 0}
            same = all(row["score"] == reference[key]["score"] for key, row in rows.items())
            complete += ok and once
            identical += same
            moved = ", ".join(
                f"{key} from {row['resumed_from']}: {row['score']:.2f} vs {reference[key]['score']:.2f}"
                for key, row in resumed.items()
            )
            print(
                f"| {index} | {moment:.1f} | {len(timed.retried)} | {on_disk}/{len(runs)} | {once} | "
                f"{'yes' if same else 'NO'} | {moved or '-'} |",
                flush=True,
            )
        print(
            f"\n{complete}/{grids} grids complete with all {len(runs)} results, each run once; "
            f"{identical}/{grids} with every run, the resumed ones too, scoring exactly as undisturbed"
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


def scaling(root: Path, node_counts: List[int]) -> None:
    import ray

    runs = expand(SCALING_GRID)
    print(
        "| nodes | grid wall-clock (s) | ratio to 1 node | run seconds (mean) | runs at once (run seconds / wall-clock) "
        "| driver overhead per run (s): mean, max |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    first: Optional[float] = None
    for nodes in node_counts:
        cluster = SimulatedCluster(root / f"scaling{nodes}", nodes=nodes)
        try:
            timed = Timed()
            started = time.perf_counter()
            rows = grid(cluster, runs, root / f"scaling{nodes}" / "out", timed, workers=nodes)
            wall = time.perf_counter() - started
        finally:
            ray.shutdown()
            cluster.shutdown()
        first = first or wall
        trained = [row["seconds"] for row in rows.values()]
        overhead = [
            timed.done[run.key] - timed.submitted[run.key] - rows[run.method + f"/seed{run.seed}"]["seconds"] for run in runs
        ]
        print(
            f"| {nodes} | {wall:.1f} | {wall / first:.2f} | {statistics.mean(trained):.1f} | {sum(trained) / wall:.2f} | "
            f"{statistics.mean(overhead):.2f}, {max(overhead):.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("node-loss", "scaling", "both"), default="both")
    parser.add_argument("--grids", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nodes", default="1,2,4", help="node counts of the scaling part")
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, python benchmarks/cluster.py --part {args.part} --grids {args.grids} "
        f"--seed {args.seed} --nodes {args.nodes}\n"
    )
    Timed.install()
    with tempfile.TemporaryDirectory(prefix="dpd-cluster-") as scratch:
        if args.part in ("node-loss", "both"):
            node_loss(Path(scratch), args.grids, args.seed)
        if args.part in ("scaling", "both"):
            scaling(Path(scratch), [int(count) for count in args.nodes.split(",")])


if __name__ == "__main__":
    main()
