"""Size on disk of an off-policy learner's checkpoint files: the SB3 zip and the replay buffer.

SB3 pickles the replay buffer's whole capacity, however full it is, so the size depends on the
buffer size and the observation dtype, not on how long the learner trained.

    python benchmarks/checkpoint_size.py --algo sac --env HalfCheetah-v5
"""

import argparse
import tempfile
from pathlib import Path

from common import plain_sb3_learner, single_threaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="sac")
    parser.add_argument("--env", default="HalfCheetah-v5")
    args = parser.parse_args()
    single_threaded()
    learner = plain_sb3_learner(args.env, args.algo, 300, seed=0)
    learner.model.learn(300)
    with tempfile.TemporaryDirectory() as tmp:
        learner.save(Path(tmp))
        for path in sorted(Path(tmp).iterdir()):
            print(f"{path.name:<24}{path.stat().st_size / 1e6:10.1f} MB")
    buffer = learner.model.replay_buffer
    print(f"replay buffer: capacity {buffer.buffer_size}, observations {buffer.observations.dtype}")
    learner.close()


if __name__ == "__main__":
    main()
