"""Environments: the factory, custom envs (``module:EnvClass`` ids, gym packages), per-env
defaults, and the tiny test env (registered on import)."""

import sys

import gymnasium as gym

from dpd.envs.factory import TINY_ENV_ID, check_env, check_env_id, make_env, suggested_env_ids

if TINY_ENV_ID not in gym.envs.registry:
    gym.register(id=TINY_ENV_ID, entry_point="dpd.envs.tiny:PointReachEnv")

__all__ = ["TINY_ENV_ID", "check_env", "check_env_id", "make_env", "suggested_env_ids"]


def _mujoco_warning(message: str) -> None:
    """Pass MuJoCo's warnings on, except the deprecation of an attribute Gymnasium's own
    HalfCheetah model uses, which MuJoCo 4 prints at every environment creation."""
    if "settotalmass" not in message:
        print(f"MuJoCo warning: {message}", file=sys.stderr)


try:
    import mujoco

    mujoco.set_mju_user_warning(_mujoco_warning)
except (ImportError, AttributeError):  # MuJoCo absent or without the hook: keep its default
    pass
