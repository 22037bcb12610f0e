"""Strong teachers for the teacher-student benchmark, trained reproducibly with the RL zoo's tuning.

Each teacher is one SB3 learner trained by ``dpd train --peers 1 --hyperparams FILE.yml:ENTRY``
with rl_zoo3's tuned entry (the zoo tunes ``-v4`` entries; they are the ones for the ``-v5``
tasks). A teacher whose run dir already holds a finished run is skipped; an interrupted one is
continued with ``dpd train --resume``. The table (``teachers.md`` and ``teachers.json`` under
``--out``) gives each teacher's final return over 10 deterministic episodes (the run's own final
evaluation), its env steps, minutes and the path of its zip for ``dpd distill --teacher``.

    pip install --no-deps rl_zoo3        # ships hyperparams/ppo.yml and sac.yml; nothing else is used
    python benchmarks/teachers.py --out results/teachers                    # the three PPO teachers
    python benchmarks/teachers.py --out results/teachers --only sac-HalfCheetah --sac-steps 300000
"""

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional


@dataclass(frozen=True)
class Teacher:
    """One teacher: a zoo entry trained on a task for a number of env steps."""

    name: str
    env: str
    hyperparams: str  # FILE.yml:ENTRY, resolved in the installed rl_zoo3 when FILE is bare
    steps: int


def teachers(sac_steps: int) -> List[Teacher]:
    ppo = [
        Teacher(f"ppo-{task}", f"{task}-v5", f"ppo.yml:{task}-v4", 1_000_000) for task in ("HalfCheetah", "Hopper", "Walker2d")
    ]
    # The deliberately weak teacher for kickstarting: the zoo's HalfCheetah recipe stopped at 300k.
    # Its learning rate and clip range are constants, so this is the 1M run's 300k-step policy.
    weak = Teacher("ppo-HalfCheetah-300k", "HalfCheetah-v5", "ppo.yml:HalfCheetah-v4", 300_000)
    sac = Teacher("sac-HalfCheetah", "HalfCheetah-v5", "sac.yml:HalfCheetah-v4", sac_steps)
    return ppo + [weak, sac]


def dpd_command() -> List[str]:
    return [sys.executable, "-m", "dpd"]


def train(teacher: Teacher, run_dir: Path, seed: int) -> Optional[str]:
    """Train (or continue) one teacher; the command that made it, or None if it was already done."""
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        if json.loads(manifest.read_text())["progress"].get("finished"):
            return None
        command = dpd_command() + ["train", "--resume", str(run_dir), "--no-progress"]
    else:
        command = dpd_command() + [
            "train", "--peers", "1", "--env", teacher.env, "--hyperparams", teacher.hyperparams,
            "--total-steps", str(teacher.steps), "--seed", str(seed), "--run-dir", str(run_dir), "--no-progress",
        ]  # fmt: skip
    print(" ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)
    return " ".join(["dpd"] + command[3:])


def row(teacher: Teacher, run_dir: Path) -> Dict[str, object]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    progress = manifest["progress"]
    final = progress["final_eval"][0]
    return {
        "teacher": teacher.name,
        "env": teacher.env,
        "hyperparams": teacher.hyperparams,
        "env_steps": final["env_steps"],
        "mean_return": final["mean_return"],
        "std_return": final["std_return"],
        "episodes": final["episodes"],
        "minutes": progress.get("train_seconds", float("nan")) / 60,
        "zip": str(run_dir / progress["checkpoint"] / "peer0" / "model.zip"),
        "command": manifest.get("command", ""),
    }


def write_table(rows: List[Dict[str, object]], out: Path) -> None:
    (out / "teachers.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| teacher | zoo entry | env steps | return (10 deterministic episodes) | minutes |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['teacher']} ({r['env']}) | {r['hyperparams']} | {r['env_steps']} | "
            f"{r['mean_return']:.1f} +- {r['std_return']:.1f} | {r['minutes']:.1f} |"
        )
    (out / "teachers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/teachers")
    parser.add_argument("--only", help="comma-separated teacher names (default: the three PPO teachers)")
    parser.add_argument("--sac-steps", type=int, default=300_000, help="env steps of the SAC teacher")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    known = {t.name: t for t in teachers(args.sac_steps)}
    names = args.only.split(",") if args.only else [n for n in known if n.startswith("ppo-") and not n.endswith("300k")]
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown teacher {', '.join(unknown)}; choose from {', '.join(known)}")
    for name in names:
        start = time.perf_counter()
        if train(known[name], out / name, args.seed) is not None:
            print(f"{name}: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    finished = [n for n in known if (out / n / "manifest.json").is_file()]
    write_table(
        [
            row(known[n], out / n)
            for n in finished
            if json.loads((out / n / "manifest.json").read_text())["progress"].get("finished")
        ],
        out,
    )


if __name__ == "__main__":
    main()
