import numpy as np
import pytest
import torch

from dpd import envs  # registers the tiny env

torch.set_num_threads(1)

TINY = envs.TINY_ENV_ID


def random_policy_return(episodes: int = 30, seed: int = 123) -> float:
    """Mean return of uniformly random actions on the tiny env."""
    import gymnasium as gym

    env = gym.make(TINY)
    env.action_space.seed(seed)
    totals = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


@pytest.fixture(scope="session")
def random_return() -> float:
    return random_policy_return()
