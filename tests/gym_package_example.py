"""A package that registers an env on import, as third-party env packages do: what
``--gym-packages tests.gym_package_example`` imports (tests/test_custom_envs.py)."""

import gymnasium as gym

ENV_ID = "PackageReach-v0"

if ENV_ID not in gym.envs.registry:
    gym.register(id=ENV_ID, entry_point="dpd.envs.tiny:PointReachEnv", kwargs={"max_steps": 20})
