"""Wall-clock of peers in parallel, against one plain SB3 learner at equal total env steps, and
how the cost and the distillation exchange grow with the number of peers.

    # 2 PPO peers with --parallel (and on Ray) vs one SB3 PPO learner, HalfCheetah-v5
    python benchmarks/parallel.py ratio --env HalfCheetah-v5 --total-steps 100000 --ray
    # N = 2, 4, 8 peers: seconds per 1000 total env steps and bytes per distillation round
    python benchmarks/parallel.py scaling --env DpdPointReach-v0 --steps-per-peer 8192

Each run starts alone (nothing else should run on the machine); periodic evaluation and
checkpoints are off, as in ``overhead.py``.
"""

import argparse
import time
from typing import Any, Dict, List, Tuple

from common import plain_sb3_learner, run_config, single_threaded, train_plain_sb3

from dpd.agents import build_group


def time_group(env_id: str, total_steps: int, peers: int, backend: str, seed: int) -> Tuple[float, List[Tuple[int, int]]]:
    """Seconds from building the peers to the end of training (process start-up included), and
    the group's (learners distilling, bytes moved) per distillation phase."""
    cfg = run_config(env_id, "ppo", total_steps, seed, peers=peers, backend=backend, eval={"every": 0})
    start = time.perf_counter()
    group = build_group(cfg)
    try:
        for learner in group.learners:
            learner.start(None)
        group.train()
        elapsed = time.perf_counter() - start
    finally:
        group.close()
    return elapsed, group.exchanges


def time_sb3(env_id: str, total_steps: int, seed: int) -> float:
    learner = plain_sb3_learner(env_id, "ppo", total_steps, seed)
    start = time.perf_counter()
    train_plain_sb3(learner)
    elapsed = time.perf_counter() - start
    learner.close()
    return elapsed


def ratio(args: argparse.Namespace) -> None:
    sb3 = time_sb3(args.env, args.total_steps, args.seed)
    parallel, _ = time_group(args.env, args.total_steps, 2, "process", args.seed)
    print(f"{args.env}, {args.total_steps} total env steps, PPO")
    print(f"plain SB3, one learner:        {sb3:8.1f} s")
    print(f"2 peers, --parallel:           {parallel:8.1f} s   ratio to SB3 {parallel / sb3:.3f}")
    if args.ray:
        on_ray, _ = time_group(args.env, args.total_steps, 2, "ray", args.seed)
        print(
            f"2 peers, --backend ray:        {on_ray:8.1f} s   ratio to SB3 {on_ray / sb3:.3f}, to --parallel "
            f"{on_ray / parallel:.3f}"
        )


def scaling(args: argparse.Namespace) -> None:
    rows: List[Dict[str, Any]] = []
    for peers in args.peers:
        total = peers * args.steps_per_peer
        seconds, exchanges = time_group(args.env, total, peers, args.backend, args.seed)
        per_learner = [size / learners for learners, size in exchanges]
        per_phase = [size for _, size in exchanges]
        rows.append(
            {
                "peers": peers,
                "total": total,
                "ms_per_1000": 1000 * seconds / total * 1000,
                "phase_kb": sum(per_phase) / len(per_phase) / 1024 if per_phase else 0.0,
                "learner_kb": sum(per_learner) / len(per_learner) / 1024 if per_learner else 0.0,
            }
        )
    print(f"{args.env}, PPO, {args.steps_per_peer} env steps per peer, backend {args.backend}, default combine rule (best)")
    print(
        "| peers | total env steps | seconds per 1000 total env steps | KiB per distillation phase (all learners) | "
        "KiB per learner's round |"
    )
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['peers']} | {row['total']} | {row['ms_per_1000'] / 1000:.3f} | {row['phase_kb']:.1f} | "
            f"{row['learner_kb']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    first = sub.add_parser("ratio")
    first.add_argument("--env", default="HalfCheetah-v5")
    first.add_argument("--total-steps", type=int, default=100_000)
    first.add_argument("--ray", action="store_true", help="also time the Ray backend")
    first.add_argument("--seed", type=int, default=0)
    first.set_defaults(handler=ratio)
    second = sub.add_parser("scaling")
    second.add_argument("--env", default="DpdPointReach-v0")
    second.add_argument("--steps-per-peer", type=int, default=8192)
    second.add_argument("--peers", type=lambda text: [int(n) for n in text.split(",")], default=[2, 4, 8])
    second.add_argument("--backend", default="process")
    second.add_argument("--seed", type=int, default=0)
    second.set_defaults(handler=scaling)
    args = parser.parse_args()
    single_threaded()
    args.handler(args)


if __name__ == "__main__":
    main()
