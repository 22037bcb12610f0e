"""What a student sees of its env's observation, where it sees less than its teacher.

A teacher trained on the simulator's full state teaches a student that sees what a real robot
measures (``student.obs``). The student's view of each observation is four transforms, always in
this order:

1. ``drop``: entries removed, by index or by a named group of the env's layout (``velocities``);
2. ``noise``: Gaussian noise of standard deviation ``noise`` (the observation's units) added to
   every kept entry, as a sensor's reading;
3. ``delay``: the student sees the observation of ``delay`` steps ago;
4. ``stack``: the last ``stack`` (delayed) observations side by side, oldest first.

Noise comes before the history, so a frame keeps the noise it was read with, as a sensor's past
reading would. At an episode's start the history is filled with the episode's first observation,
so a view never mixes two episodes. One ``ObservationView`` follows one env's trajectory; the
student's envs hold theirs in a ``StudentView`` wrapper (below VecNormalize, which so normalises
what the student sees), which also keeps the full observation of the same step for the teacher
(``seen_and_full``); ``TrajectoryViews`` computes the student's view along a trajectory the
teacher acts in, in its own full-observation env.

Named groups come from Gymnasium itself: its MuJoCo v5 envs publish ``observation_structure``
("a dictionary for specifying the observation space compose (e.g. `qpos`, `qvel`), useful for
building tooling and wrappers", gymnasium/envs/mujoco/half_cheetah_v5.py, version history of
v5), the sizes of the observation's parts in their order: ``qpos`` (positions, less the
``skipped_qpos`` left out of the observation), ``qvel`` (velocities), then for Ant and Humanoid
the contact forces and inertias (``cfrc_ext``, ``cinert``, ...). HalfCheetah-v5's docstring:
"qpos (8 elements by default) ... qvel (9 elements)", so its 17 observations are 8 positions
(0-7) then 9 velocities (8-16); Walker2d-v5 the same; Hopper-v5 5 positions then 6 velocities.
Reading the structure rather than a table of ours follows ``env_kwargs`` too
(``exclude_current_positions_from_observation=False`` adds the x position to ``qpos``).
"""

from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, SupportsFloat, Tuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dpd.config import ObservationViewConfig, comma_list
from dpd.errors import UserError

NOISE_STREAM = 27  # the noise's random stream: seeded by the env's seed, apart from the env's own stream
# dpd's names for Gymnasium's parts (``observation_structure``), beside Gymnasium's own.
GROUP_NAMES = {"qpos": "positions", "qvel": "velocities"}
SKIPPED = "skipped_qpos"  # positions Gymnasium leaves out of the observation: no entries


def observation_groups(env: gym.Env) -> Optional[Dict[str, Tuple[int, int]]]:
    """The named groups of ``env``'s observation as (start, stop) indices, or None where dpd does
    not know its layout: Gymnasium publishes none, or its parts do not add up to the observation."""
    structure = getattr(env.unwrapped, "observation_structure", None)
    if not isinstance(structure, dict) or not isinstance(env.observation_space, spaces.Box):
        return None
    groups: Dict[str, Tuple[int, int]] = {}
    start = 0
    for part, size in structure.items():
        if part == SKIPPED or not size:
            continue
        groups[part] = (start, start + int(size))
        if part in GROUP_NAMES:
            groups[GROUP_NAMES[part]] = groups[part]
        start += int(size)
    return groups if start == int(np.prod(env.observation_space.shape)) else None


def kept_indices(drop: str, env: gym.Env, env_id: str) -> np.ndarray:
    """The indices of ``env``'s observation the student sees, after dropping ``drop``'s items
    (indices and named groups, comma-separated); every fault is one line for the user."""
    size = int(np.prod(env.observation_space.shape)) if isinstance(env.observation_space, spaces.Box) else 0
    if size == 0 or len(env.observation_space.shape) != 1:
        raise UserError(f"student.obs needs a flat Box observation; {env_id} has {env.observation_space}")
    dropped = set()
    for item in comma_list(drop):
        if item.lstrip("-").isdigit():
            index = int(item)
            if not 0 <= index < size:
                raise UserError(
                    f"student.obs.drop: index {index} is out of range for {env_id}'s {size} observations (0 to {size - 1})"
                )
            dropped.add(index)
            continue
        groups = observation_groups(env)
        if groups is None:
            raise UserError(
                f"student.obs.drop: {item!r} names a group, but dpd knows no observation layout for {env_id} (Gymnasium's "
                f"MuJoCo v5 envs publish theirs); give indices from 0 to {size - 1}"
            )
        if item not in groups:
            raise UserError(f"unknown student.obs.drop group {item!r} for {env_id}; its groups: {', '.join(sorted(groups))}")
        dropped.update(range(*groups[item]))
    if len(dropped) == size:
        raise UserError(f"student.obs.drop={drop} drops all {size} observations of {env_id}; the student would see nothing")
    return np.array([index for index in range(size) if index not in dropped], dtype=np.int64)


class ObservationView:
    """The student's view of one env's trajectory: drop, noise, delay, stack (the module's doc).
    ``reset`` at each episode's first observation, ``step`` at every next one."""

    def __init__(self, keep: np.ndarray, noise: float, delay: int, stack: int, seed: Optional[int] = None) -> None:
        self.keep = keep
        self.noise = noise
        self.delay = delay
        self.stack = stack
        # Each frame of the history, oldest first: the last ``delay + stack`` readings.
        self.history: Deque[np.ndarray] = deque(maxlen=delay + stack)
        self.rng = np.random.default_rng()  # a student's env reseeds it at its first, seeded, reset
        if seed is not None:
            self.seed(seed)

    @classmethod
    def of(cls, config: ObservationViewConfig, env: gym.Env, env_id: str) -> "ObservationView":
        """The view ``config`` asks for of ``env``'s observations."""
        return cls(kept_indices(config.drop, env, env_id), config.noise, config.delay, config.stack)

    def fresh(self, seed: int) -> "ObservationView":
        """The same view for another trajectory, its noise seeded by ``seed``."""
        return ObservationView(self.keep, self.noise, self.delay, self.stack, seed)

    def seed(self, seed: int) -> None:
        """Seed the noise: the same seed gives the same noise, whatever the env's own stream."""
        self.rng = np.random.default_rng([seed, NOISE_STREAM])

    def _reading(self, full: np.ndarray) -> np.ndarray:
        reading = np.asarray(full)[self.keep]
        if self.noise > 0:
            reading = reading + self.rng.normal(0.0, self.noise, size=reading.shape)
        return reading.astype(np.asarray(full).dtype, copy=False)

    def reset(self, full: np.ndarray) -> np.ndarray:
        """The view of an episode's first observation: every frame of the history is it."""
        reading = self._reading(full)
        self.history.clear()
        self.history.extend([reading] * (self.delay + self.stack))
        return self._frames()

    def step(self, full: np.ndarray) -> np.ndarray:
        """The view once ``full`` is the newest observation of the episode."""
        self.history.append(self._reading(full))
        return self._frames()

    def _frames(self) -> np.ndarray:
        frames = list(self.history)[: self.stack]  # the oldest ``stack``: the newest of them is ``delay`` steps old
        return np.concatenate(frames)

    def space(self, full: spaces.Box) -> spaces.Box:
        """The view's observation space, from the full one's bounds (noise may cross them)."""
        low, high = np.tile(full.low[self.keep], self.stack), np.tile(full.high[self.keep], self.stack)
        return spaces.Box(low, high, dtype=full.dtype)  # type: ignore[arg-type]


class StudentView(gym.Wrapper):
    """A student's env: it sees its ``ObservationView``, and ``full_observation`` keeps the full
    observation of the same step for the teacher. SB3's DummyVecEnv resets an env inside its
    step when an episode ends, through this wrapper, so the full observation is then the reset's,
    as the view is."""

    def __init__(self, env: gym.Env, config: ObservationViewConfig, env_id: str) -> None:
        super().__init__(env)
        self.view = ObservationView.of(config, env, env_id)
        assert isinstance(env.observation_space, spaces.Box)
        self.full_space = env.observation_space
        self.observation_space = self.view.space(env.observation_space)
        self.full_observation: Optional[np.ndarray] = None

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None) -> Tuple[np.ndarray, Dict]:
        full, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.view.seed(seed)
        self.full_observation = np.asarray(full)
        return self.view.reset(full), info

    def step(self, action: Any) -> Tuple[np.ndarray, SupportsFloat, bool, bool, Dict[str, Any]]:
        full, reward, terminated, truncated, info = self.env.step(action)
        self.full_observation = np.asarray(full)
        return self.view.step(full), reward, terminated, truncated, info


def wrappers(venv: Any) -> List[StudentView]:
    """The ``StudentView`` of each env of a dpd VecEnv (a DummyVecEnv, maybe VecNormalize-wrapped);
    none where its learner sees the full observation. A look at its envs, not ``get_attr``: this
    runs at every env step, and a missing attribute costs an exception per env."""
    return [env for env in getattr(venv.unwrapped, "envs", []) if isinstance(env, StudentView)]


def seen_and_full(venv: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The raw observation of a VecNormalize-wrapped env's current step per env: as its learner
    sees it, and in full (the same array where the learner sees the full observation)."""
    seen, views = venv.get_original_obs(), wrappers(venv)
    return seen, (np.stack([view.full_observation for view in views]).astype(np.float32) if views else seen)


def full_size(venv: Any) -> int:
    """Entries of the full observation of a VecEnv's envs (that of its learner's view, if any)."""
    views = wrappers(venv)
    return int(np.prod((views[0].full_space if views else venv.observation_space).shape))


def student_view(venv: Any) -> Optional[ObservationView]:
    """The view a VecEnv's learner sees (that of its first env), or None where it sees the full observation."""
    views = wrappers(venv)
    return views[0].view if views else None


class TrajectoryViews:
    """The student's view along a trajectory of full observations that another policy acts in
    (the teacher, in its own env): one ``ObservationView`` per env, reset where an episode starts."""

    def __init__(self, template: ObservationView, n_envs: int, seed: int) -> None:
        self.views = [template.fresh(seed + index) for index in range(n_envs)]

    def observe(self, full: np.ndarray, starts: Sequence[bool]) -> np.ndarray:
        """The views of the newest full observations (one per env); ``starts`` marks those that begin an episode."""
        return np.stack(
            [view.reset(obs) if start else view.step(obs) for view, obs, start in zip(self.views, full, starts)]
        ).astype(np.float32)
