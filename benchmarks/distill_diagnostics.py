"""Summarise a run's distillation diagnostics from its TensorBoard events.

For each learner: min, median and last value of the ``distill/*`` tags after ``--after`` learner
steps, and the ``eval/mean_reward`` curve.

    python benchmarks/distill_diagnostics.py results/hc_1m_seed0/dpd --after 100000
"""

import argparse
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = ("distill/peer_better_frac", "distill/peer_gap", "distill/weight_mean", "distill/loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--after", type=int, default=0, help="ignore points before this learner step")
    args = parser.parse_args()
    for learner_dir in sorted((Path(args.run_dir) / "tb").iterdir()):
        events = EventAccumulator(str(learner_dir))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        print(learner_dir.name)
        for tag in TAGS:
            if tag not in tags:
                continue
            values = np.array([e.value for e in events.Scalars(tag) if e.step >= args.after])
            if len(values):
                print(
                    f"  {tag:<28} min {values.min():9.3f}  median {np.median(values):9.3f}  last {values[-1]:9.3f}  "
                    f"({len(values)} points)"
                )
        if "eval/mean_reward" in tags:
            curve = ", ".join(f"{e.step}: {e.value:.0f}" for e in events.Scalars("eval/mean_reward"))
            print(f"  eval/mean_reward  {curve}")


if __name__ == "__main__":
    main()
