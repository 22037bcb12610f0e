"""Distillation overhead: DPD (2 peers, sequential) vs one plain SB3 learner at equal total env steps.

Both run in this one process, single-threaded, interleaved over repeats so machine noise hits
both alike; no evaluation or checkpoints, TensorBoard logging on for both. Prints the
wall-clock ratio DPD / SB3 (the issues ask for <= 1.05).

    python benchmarks/overhead.py --algo ppo --env HalfCheetah-v5 --total-steps 100000 --repeats 3
    python benchmarks/overhead.py --algo sac --env HalfCheetah-v5 --total-steps 10000 --repeats 3
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import plain_sb3_learner, run_config, single_threaded, train_plain_sb3

from agents.training import build_group


def time_sb3(algo: str, env_id: str, steps: int, seed: int, tb: Path) -> float:
    learner = plain_sb3_learner(env_id, algo, steps, seed, tb / "sb3")
    start = time.perf_counter()
    train_plain_sb3(learner)
    elapsed = time.perf_counter() - start
    learner.close()
    return elapsed


def time_dpd(algo: str, env_id: str, steps: int, seed: int, tb: Path) -> float:
    group = build_group(run_config(env_id, algo, steps, seed, peers=2))
    start = time.perf_counter()
    for learner in group.learners:
        learner.start(tb / learner.spec.name)
    group.train()
    elapsed = time.perf_counter() - start
    for learner in group.learners:
        learner.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    single_threaded()
    sb3_times, dpd_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            seed = args.seed + repeat
            sb3_times.append(time_sb3(args.algo, args.env, args.total_steps, seed, Path(tmp) / f"r{repeat}"))
            dpd_times.append(time_dpd(args.algo, args.env, args.total_steps, seed, Path(tmp) / f"r{repeat}"))
            print(f"repeat {repeat}: sb3 {sb3_times[-1]:.1f}s  dpd {dpd_times[-1]:.1f}s  ratio {dpd_times[-1] / sb3_times[-1]:.3f}", flush=True)
    ratio = statistics.median(dpd_times) / statistics.median(sb3_times)
    print(f"{args.algo} on {args.env}, {args.total_steps} total env steps, {args.repeats} interleaved repeats")
    print(f"median wall-clock: sb3 {statistics.median(sb3_times):.1f}s, dpd {statistics.median(dpd_times):.1f}s")
    print(f"DPD/SB3 wall-clock ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
