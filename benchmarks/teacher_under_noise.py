"""A teacher's own return when Gaussian noise is added to every observation it sees: how much a
noisy-observation student (``student.obs.noise``) has to make up (benchmarks/RESULTS.md, "A
student that sees less than its teacher").

    python benchmarks/teacher_under_noise.py HalfCheetah-v5 benchmarks/teachers/ppo-HalfCheetah/model.zip 0,0.05
"""

import argparse

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize


class ObservationNoise(gym.ObservationWrapper):
    """Gaussian noise of standard deviation ``sigma`` in the observation's own units (seeded)."""

    def __init__(self, env: gym.Env, sigma: float, seed: int) -> None:
        super().__init__(env)
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation + self.rng.normal(0.0, self.sigma, size=observation.shape).astype(observation.dtype)


def mean_return(env_id: str, model_zip: str, sigma: float, episodes: int) -> tuple:
    venv = DummyVecEnv([lambda: ObservationNoise(gym.make(env_id), sigma, seed=0)])
    venv = VecNormalize.load(model_zip.replace("model.zip", "vecnormalize.pkl"), venv)
    venv.training, venv.norm_reward = False, False
    model = PPO.load(model_zip, device="cpu")
    returns = []
    for episode in range(episodes):
        venv.seed(100 + episode)
        obs, done, total = venv.reset(), False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, dones, _ = venv.step(action)
            total, done = total + float(reward[0]), bool(dones[0])
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env")
    parser.add_argument("model", help="a PPO zip with its vecnormalize.pkl beside it")
    parser.add_argument("sigmas", help="noise standard deviations, comma-separated")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    for sigma in (float(value) for value in args.sigmas.split(",")):
        mean, std = mean_return(args.env, args.model, sigma, args.episodes)
        print(f"{args.env} noise {sigma}: {mean:.1f} +- {std:.1f} ({args.episodes} deterministic episodes)")


if __name__ == "__main__":
    main()
