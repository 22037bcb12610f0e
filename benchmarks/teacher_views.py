"""A teacher's own return when it sees what a student sees, or its best reconstruction of the
full observation from it: how much a student that sees less (``student.obs``) can hope to recover
(benchmarks/RESULTS.md, "A student that sees less than its teacher").

    python benchmarks/teacher_views.py Walker2d-v5 benchmarks/teachers/ppo-Walker2d/model.zip \
        full,noise0.05,differenced,differenced-root-held

Views (each a wrapper on the env's raw observation, below the teacher's VecNormalize):

- ``full``: the observation as the teacher was trained on it;
- ``noiseS``: Gaussian noise of standard deviation S on every entry (seeded), as ``student.obs.noise``;
- ``differenced``: every velocity that has a position in the observation replaced by the finite
  difference of that position over the env's time step (what 2 stacked frames of positions can
  give at best), the others (the root's forward speed: its position is not observed) kept true;
- ``differenced-root-held``: the same, with the velocities that have no position held at the mean
  the teacher's normalisation saw in training (what positions alone can give at best).

Gymnasium's MuJoCo v5 locomotion envs observe ``qpos[1:]`` then ``qvel`` (``observation_structure``):
the root's x position is left out, so its velocity ``qvel[0]`` has no position to difference; every
other velocity is that of an observed hinge or slide joint, the time derivative of its position.
"""

import argparse
from typing import Callable, Dict, Tuple

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize


class ObservationNoise(gym.ObservationWrapper):
    """Gaussian noise of standard deviation ``sigma`` in the observation's own units (seeded)."""

    def __init__(self, env: gym.Env, sigma: float, seed: int = 0) -> None:
        super().__init__(env)
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation + self.rng.normal(0.0, self.sigma, size=observation.shape).astype(observation.dtype)


class DifferencedVelocities(gym.Wrapper):
    """Velocities replaced by finite differences of their observed positions; those without a
    position (the skipped root coordinates) kept true, or held at ``held`` where it is given."""

    def __init__(self, env: gym.Env, held: Dict[int, float]) -> None:
        super().__init__(env)
        structure = env.unwrapped.observation_structure
        skipped, self.positions = int(structure.get("skipped_qpos", 0)), int(structure["qpos"])
        # qvel[skipped:] are the derivatives of the observed qpos[skipped:], observation entries 0..positions-1.
        self.differenced = np.arange(self.positions + skipped, self.positions + skipped + self.positions)
        self.rootless = np.arange(self.positions, self.positions + skipped)
        self.held = held
        self.dt = float(env.unwrapped.dt)
        self.previous: np.ndarray = np.zeros(self.positions)

    def _view(self, observation: np.ndarray, first: bool) -> np.ndarray:
        view = np.array(observation, copy=True)
        positions = observation[: self.positions]
        view[self.differenced] = 0.0 if first else (positions - self.previous) / self.dt
        for index in self.rootless:
            if index in self.held:
                view[index] = self.held[index]
        self.previous = positions.copy()
        return view

    def reset(self, **kwargs) -> Tuple[np.ndarray, dict]:
        observation, info = self.env.reset(**kwargs)
        return self._view(observation, first=True), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._view(observation, first=False), reward, terminated, truncated, info


def view_maker(view: str, norm_mean: np.ndarray) -> Callable[[gym.Env], gym.Env]:
    """The wrapper of one view name (the module's doc)."""
    if view == "full":
        return lambda env: env
    if view.startswith("noise"):
        return lambda env: ObservationNoise(env, float(view.removeprefix("noise")))
    if view == "differenced":
        return lambda env: DifferencedVelocities(env, held={})

    if view == "differenced-root-held":

        def held(env: gym.Env) -> gym.Env:
            structure = env.unwrapped.observation_structure
            first, count = int(structure["qpos"]), int(structure.get("skipped_qpos", 0))
            return DifferencedVelocities(env, {i: float(norm_mean[i]) for i in range(first, first + count)})

        return held
    raise SystemExit(f"unknown view {view!r}; views: full, noiseS (e.g. noise0.05), differenced, differenced-root-held")


def mean_return(env_id: str, model_zip: str, view: str, episodes: int) -> Tuple[float, float]:
    norm_path = model_zip.replace("model.zip", "vecnormalize.pkl")
    mean = VecNormalize.load(norm_path, DummyVecEnv([lambda: gym.make(env_id)])).obs_rms.mean
    wrap = view_maker(view, mean)
    venv = VecNormalize.load(norm_path, DummyVecEnv([lambda: wrap(gym.make(env_id))]))
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
    parser.add_argument("views", help="comma-separated: full, noiseS, differenced, differenced-root-held")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    for view in args.views.split(","):
        mean, std = mean_return(args.env, args.model, view, args.episodes)
        print(f"{args.env} {view}: {mean:.1f} +- {std:.1f} ({args.episodes} deterministic episodes)")


if __name__ == "__main__":
    main()
