"""Environments: the factory, per-env defaults, and the tiny test env (registered on import)."""

import gymnasium as gym

from envs.factory import TINY_ENV_ID, check_env_id, make_env, suggested_env_ids

if TINY_ENV_ID not in gym.envs.registry:
    gym.register(id=TINY_ENV_ID, entry_point="envs.tiny:PointReachEnv")

__all__ = ["TINY_ENV_ID", "check_env_id", "make_env", "suggested_env_ids"]
