"""ONNX export, measured: does the graph act as SB3 does, and what does an action cost?

For each model: export it with ``dpd export`` (through ``dpd.agents.onnx_export.export_source``,
checked on 10,000 raw states of its own deterministic episodes), then time one action at batch 1
on one thread in onnxruntime and through SB3 (``policy._predict`` from a normalised observation,
as ``dpd fidelity`` times it). The models: the zips given with ``--model``, and (``--trained``)
PPO, SAC and TD3 trained briefly here on the task, each with and without observation
normalisation, so that every algorithm's action path (Gaussian mean and clipping; tanh squashing
and rescaling) is checked on real states.

    python benchmarks/onnx_export.py --env HalfCheetah-v5 --trained \\
        --model teacher-256x256=benchmarks/teachers/ppo-HalfCheetah/model.zip \\
        --model student-32x32=results/distill/HalfCheetah-v5/dagger-32x32-default/seed0/checkpoints/<latest>/student/model.zip
"""

import argparse
import sys
import tempfile
from pathlib import Path
from typing import List, Tuple

import gymnasium as gym
import torch
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from dpd.agents.comparison import microseconds_per_action, rollout_states
from dpd.agents.onnx_export import export_source
from dpd.agents.teacher_loading import UNTRAINED, load_saved_learner

TRAINED = {"ppo": PPO, "sac": SAC, "td3": TD3}
TRAIN_STEPS = 5_000  # enough for normalisation statistics and a policy that is not its initialisation


def train_briefly(algo: str, env_id: str, normalize: bool, folder: Path) -> Path:
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(env_id)]), norm_obs=normalize, norm_reward=False)
    extra = {"learning_starts": 1_000} if algo != "ppo" else {}
    model = TRAINED[algo]("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]}, **extra)
    model.learn(TRAIN_STEPS)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.zip")
    if normalize:
        venv.save(str(folder / "vecnormalize.pkl"))
    return folder / "model.zip"


def sb3_us_per_action(zip_path: Path, env_id: str) -> Tuple[float, int]:
    learner = load_saved_learner("model", zip_path, "", "", env_id, 0, {}, UNTRAINED)
    try:
        parameters = sum(parameter.numel() for parameter in learner.actor_parameters())  # what acts when deployed
        return microseconds_per_action(learner, rollout_states(learner, 200)), parameters
    finally:
        learner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=ZIP", help="a saved SB3 model (repeatable)")
    parser.add_argument(
        "--trained", action="store_true", help="also PPO, SAC and TD3 trained briefly, with and without normalisation"
    )
    parser.add_argument("--states", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models: List[Tuple[str, Path]] = []
    for given in args.model:
        name, _, path = given.partition("=")
        models.append((name, Path(path)))
    scratch = Path(tempfile.mkdtemp(prefix="dpd-onnx-"))
    if args.trained:
        for algo in TRAINED:
            for normalize in (True, False):
                name = f"{algo}-64x64-{'normalized' if normalize else 'raw'}"
                print(f"training {name} for {TRAIN_STEPS} steps", file=sys.stderr, flush=True)
                models.append((name, train_briefly(algo, args.env, normalize, scratch / name)))
    rows = [
        "| model | policy parameters | max abs action difference (states) | onnxruntime us/action | SB3 us/action |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, zip_path in models:
        check = export_source(zip_path, scratch / f"{name}.onnx", env_id=args.env, states=args.states)
        sb3_us, parameters = sb3_us_per_action(zip_path, args.env)
        difference = f"{check.max_abs_difference:.2g} ({check.states})"
        rows.append(f"| {name} | {parameters} | {difference} | {check.us_per_action:.1f} | {sb3_us:.1f} |")
        print(rows[-1], flush=True)
    print(f"\n{args.env}, batch 1, one thread, median of 2000 calls\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
