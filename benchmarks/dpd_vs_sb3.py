"""One-seed comparison at equal total env steps: a DPD pair vs one plain SB3 learner.

The DPD run is an ordinary ``dpd train`` run (2 peers, each with half the budget); the baseline
is SB3's own ``learn()`` on a learner built with the same hyperparameters and seed. Both run at
once in two single-threaded processes; each is then scored by deterministic evaluation
episodes on a separate env with frozen observation statistics.

    python benchmarks/dpd_vs_sb3.py --env HalfCheetah-v5 --total-steps 1000000 --seed 0 --out results/hc_1m
"""

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any, Dict, List

from common import describe, plain_sb3_learner, run_config, single_threaded, train_plain_sb3

from dpd.agents import new_run


def run_dpd(env_id: str, total_steps: int, seed: int, out: Path, episodes: int) -> List[Dict[str, Any]]:
    single_threaded()
    cfg = run_config(env_id, "ppo", total_steps, seed, peers=2, eval={"final_episodes": episodes})
    trainer = new_run(out / "dpd", cfg)
    start = time.perf_counter()
    results = trainer.train(progress_bar=False)
    trainer.close()
    elapsed = time.perf_counter() - start
    return [
        dict(
            method="dpd",
            learner=r.learner,
            env_steps=r.env_steps,
            mean_return=r.mean_return,
            std_return=r.std_return,
            seconds=elapsed,
        )
        for r in results
    ]


def run_sb3(env_id: str, total_steps: int, seed: int, out: Path, episodes: int) -> List[Dict[str, Any]]:
    single_threaded()
    learner = plain_sb3_learner(env_id, "ppo", total_steps, seed, out / "sb3" / "tb")
    start = time.perf_counter()
    train_plain_sb3(learner)
    elapsed = time.perf_counter() - start
    result = describe(learner.evaluate(episodes))
    learner.model.save(out / "sb3" / "model.zip")
    learner.env.save(str(out / "sb3" / "vecnormalize.pkl"))
    learner.close()
    return [dict(method="sb3", learner="sb3", env_steps=learner.num_timesteps, seconds=elapsed, **result)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--total-steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default="results/dpd_vs_sb3")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    (out / "sb3").mkdir(parents=True)
    jobs = [
        (run_dpd, (args.env, args.total_steps, args.seed, out, args.episodes)),
        (run_sb3, (args.env, args.total_steps, args.seed, out, args.episodes)),
    ]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pending = [pool.apply_async(fn, job_args) for fn, job_args in jobs]
        rows = [row for job in pending for row in job.get()]
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"{args.env}, {args.total_steps} total env steps, seed {args.seed}, {args.episodes} deterministic episodes")
    print(f"{'method':<8}{'learner':<8}{'env steps':>10}{'return':>12}{'std':>9}{'seconds':>9}")
    for row in rows:
        print(
            f"{row['method']:<8}{row['learner']:<8}{row['env_steps']:>10}{row['mean_return']:>12.1f}{row['std_return']:>9.1f}{row['seconds']:>9.0f}"
        )
    dpd = [row["mean_return"] for row in rows if row["method"] == "dpd"]
    print(f"DPD mean over peers: {sum(dpd) / len(dpd):.1f}; best peer (a selection effect): {max(dpd):.1f}")


if __name__ == "__main__":
    main()
