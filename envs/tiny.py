"""A tiny, fast continuous-control task for tests: steer a point to a goal on a plane.

Observation: (x, y, goal_x, goal_y), deliberately scaled by ``obs_scale`` so that observation
normalisation matters. Action: a velocity in [-action_scale, action_scale]^2, moving the point
by ``0.2 * action / action_scale`` (tests use ``action_scale`` to check action-space handling).
Reward: minus the distance to the goal, times ``reward_scale`` (so tests can check value units).
A random policy scores about -30 over the 40 steps; a good one about -4.
"""

from typing import Any, Dict, Optional, Tuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PointReachEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        max_steps: int = 40,
        obs_scale: float = 10.0,
        reward_scale: float = 1.0,
        action_scale: float = 1.0,
        render_mode: Optional[str] = None,
    ) -> None:
        self.render_mode = render_mode
        self.max_steps = max_steps
        self.obs_scale = obs_scale
        self.reward_scale = reward_scale
        self.action_scale = action_scale
        high = np.full(4, 2.0 * obs_scale, dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-action_scale, action_scale, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2)
        self._goal = np.zeros(2)
        self._steps = 0

    def _obs(self) -> np.ndarray:
        return (np.concatenate([self._pos, self._goal]) * self.obs_scale).astype(np.float32)

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None) -> Tuple[np.ndarray, Dict]:
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-1.0, 1.0, size=2)
        self._goal = self.np_random.uniform(-1.0, 1.0, size=2)
        self._steps = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict]:
        action = np.clip(np.asarray(action, dtype=np.float64) / self.action_scale, -1.0, 1.0)
        self._pos = np.clip(self._pos + 0.2 * action, -2.0, 2.0)
        self._steps += 1
        distance = float(np.linalg.norm(self._pos - self._goal))
        reward = -distance * self.reward_scale
        truncated = self._steps >= self.max_steps
        return self._obs(), reward, False, truncated, {}
