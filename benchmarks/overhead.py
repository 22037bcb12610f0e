"""Distillation overhead: DPD (2 peers, sequential) vs one plain SB3 learner at equal total env steps.

Both run in this one process, single-threaded, interleaved over repeats so machine noise hits
both alike; no evaluation or checkpoints, TensorBoard logging on for both. Prints the
wall-clock ratio DPD / SB3 (the issues ask for <= 1.05) and the CPU-time ratio of this process,
which other processes on the machine disturb far less.

    python benchmarks/overhead.py --algo ppo --env HalfCheetah-v5 --total-steps 100000 --repeats 3
    python benchmarks/overhead.py --algo sac --env HalfCheetah-v5 --total-steps 10000 --repeats 3
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

from common import plain_sb3_learner, run_config, single_threaded, train_plain_sb3

from dpd.agents.assembly import build_group

Timing = Tuple[float, float]  # (wall-clock, CPU time) in seconds


def measure(work: Callable[[], None]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_sb3(algo: str, env_id: str, steps: int, seed: int, tb: Path) -> Timing:
    learner = plain_sb3_learner(env_id, algo, steps, seed, tb / "sb3")
    timing = measure(lambda: train_plain_sb3(learner))
    learner.close()
    return timing


def time_dpd(algo: str, env_id: str, steps: int, seed: int, tb: Path) -> Timing:
    group = build_group(run_config(env_id, algo, steps, seed, peers=2))

    def train() -> None:
        for learner in group.learners:
            learner.start(tb / learner.spec.name)
        group.train()

    timing = measure(train)
    group.close()
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    single_threaded()
    sb3: List[Timing] = []
    dpd: List[Timing] = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            seed = args.seed + repeat
            sb3.append(time_sb3(args.algo, args.env, args.total_steps, seed, Path(tmp) / f"r{repeat}"))
            dpd.append(time_dpd(args.algo, args.env, args.total_steps, seed, Path(tmp) / f"r{repeat}"))
            print(
                f"repeat {repeat}: wall sb3 {sb3[-1][0]:.1f}s dpd {dpd[-1][0]:.1f}s ratio {dpd[-1][0] / sb3[-1][0]:.3f}"
                f" | cpu sb3 {sb3[-1][1]:.1f}s dpd {dpd[-1][1]:.1f}s ratio {dpd[-1][1] / sb3[-1][1]:.3f}",
                flush=True,
            )
    print(f"{args.algo} on {args.env}, {args.total_steps} total env steps, {args.repeats} interleaved repeats")
    for index, kind in enumerate(("wall-clock", "CPU-time")):
        sb3_median = statistics.median(t[index] for t in sb3)
        dpd_median = statistics.median(t[index] for t in dpd)
        print(
            f"median {kind}: sb3 {sb3_median:.1f}s, dpd {dpd_median:.1f}s; DPD/SB3 {kind} ratio: {dpd_median / sb3_median:.3f}"
        )


if __name__ == "__main__":
    main()
