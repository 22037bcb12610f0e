"""Compression by distillation: a small student learns a PPO teacher's HalfCheetah-v5 policy.

1. Train the teacher with dpd itself: one PPO learner (SB3 defaults + VecNormalize, 64x64), 1M
   steps (skipped when ``--out``/teacher already holds it).
2. Distill it into a student with ``--student-net`` (default 24,24: about 4.9x fewer parameters) by
   each mode for ``--student-steps`` env steps.
3. Report each student's return ratio to the teacher, its fidelity and the env steps it used.

    python benchmarks/teacher_student.py --out results/teacher_student --teacher-steps 1000000 --student-steps 100000
"""

import argparse
import json
import time
from pathlib import Path

from common import single_threaded

from dpd.agents import new_run
from dpd.config import build_config


def parameter_count(policy) -> int:
    return sum(p.numel() for p in policy.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--out", default="results/teacher_student")
    parser.add_argument("--teacher-steps", type=int, default=1_000_000)
    parser.add_argument("--student-steps", type=int, default=100_000)
    parser.add_argument("--student-net", default="24,24")
    parser.add_argument("--modes", default="online,offline,kickstart,gated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    single_threaded()
    out = Path(args.out)
    teacher_run = out / "teacher"
    if not (teacher_run / "manifest.json").is_file():
        cfg = build_config(
            {"env": args.env, "peers": 1, "total_steps": args.teacher_steps, "seed": args.seed, "distill": {"enabled": False}}
        )
        start = time.perf_counter()
        trainer = new_run(teacher_run, cfg)
        trainer.train(progress_bar=False)
        trainer.close()
        print(f"teacher trained in {time.perf_counter() - start:.0f}s", flush=True)
    manifest = json.loads((teacher_run / "manifest.json").read_text())
    teacher_zip = teacher_run / manifest["progress"]["checkpoint"] / "peer0" / "model.zip"
    net = [int(size) for size in args.student_net.split(",")]
    rows = []
    for mode in args.modes.split(","):
        cfg = build_config(
            {
                "env": args.env,
                "peers": 1,
                "total_steps": args.student_steps,
                "seed": args.seed,
                "algo_kwargs": {"policy_kwargs": {"net_arch": net}},
                "teacher": {"path": str(teacher_zip), "mode": mode},
                "eval": {"final_episodes": args.episodes, "every": 0},
            }
        )
        start = time.perf_counter()
        trainer = new_run(out / f"student_{mode}", cfg)
        (result,) = trainer.train(progress_bar=False)
        teacher_params = parameter_count(trainer.group.teacher.model.policy)
        student_params = parameter_count(trainer.group.student.model.policy)
        trainer.close()
        rows.append(
            dict(
                mode=mode,
                env_steps=result.env_steps,
                student_return=result.mean_return,
                seconds=time.perf_counter() - start,
                teacher_params=teacher_params,
                student_params=student_params,
                **result.metrics,
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(
        f"\n{args.env}: teacher {rows[0]['teacher_params']} parameters (PPO, {args.teacher_steps} steps), "
        f"student {rows[0]['student_params']} ({args.student_net}); {args.episodes} deterministic episodes each"
    )
    print(
        "| mode | env steps | teacher return | student return | return ratio | action MSE (teacher states) | "
        "agreement (teacher states) | action MSE (student states) | agreement (student states) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['mode']} | {r['env_steps']} | {r['fidelity/teacher_return']:.1f} | {r['student_return']:.1f} | "
            f"{r['fidelity/return_ratio']:.3f} | "
            f"{r['fidelity/teacher_states/action_mse']:.4f} | {r['fidelity/teacher_states/agreement']:.3f} | "
            f"{r['fidelity/student_states/action_mse']:.4f} | {r['fidelity/student_states/agreement']:.3f} |"
        )


if __name__ == "__main__":
    main()
