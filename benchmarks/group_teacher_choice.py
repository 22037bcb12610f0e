"""Which peer of a group teaches its student: the share of the student's states on which each
peer's critic values the state highest (``teacher.combine=best``, the rule a ``dpd-distilled``
student is taught by), from the student's final data set (benchmarks/RESULTS.md, "dpd-distilled").

    python benchmarks/group_teacher_choice.py results/distilled/HalfCheetah-v5/ppo/dpd-distilled/seed*/student/run
"""

import argparse
from pathlib import Path

import numpy as np
import yaml

from dpd.agents.teacher_loading import load_teachers
from dpd.config import build_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="a dpd-distilled student run directory (with states.npy)")
    args = parser.parse_args()
    for run in map(Path, args.runs):
        cfg = build_config(yaml.safe_load((run / "config.yaml").read_text()))
        states = np.load(sorted(run.glob("checkpoints/*/student/states.npy"))[-1])
        teachers = load_teachers(cfg, cfg.distill)
        try:
            values = np.stack([teacher.values_on(states) for teacher in teachers])  # raw return units
            share = np.bincount(values.argmax(axis=0), minlength=len(teachers)) / len(states)
            parts = ", ".join(
                f"{teacher.spec.name.removeprefix('teacher ')} {fraction:.3f} (mean value {value:.1f})"
                for teacher, fraction, value in zip(teachers, share, values.mean(axis=1))
            )
            print(f"{run}: {len(states)} states; labelled by {parts}")
        finally:
            for teacher in teachers:
                teacher.close()


if __name__ == "__main__":
    main()
