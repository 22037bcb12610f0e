"""What a checkpoint holds beyond the models, so that a run continued from it goes on exactly as
the run made in one go.

SB3's zip keeps the model with its rollout continuity (``_last_obs``, ``_last_original_obs``,
``_last_episode_starts``, the episode-info buffers, the action space's generator), which
``load(force_reset=False)`` keeps, and ``VecNormalize.save`` keeps the statistics. What neither
keeps, a learner's ``RESUME_FILE`` holds:

- the training env whole: every sub-env's internal state (MuJoCo's ``MjData``, the env's
  ``np_random``, ``TimeLimit``'s elapsed steps, ``Monitor``'s episode sums, a student's view's
  noise generator and history), and VecNormalize's discounted return, which its pickle drops;
- the evaluation env, whose episodes go on from one evaluation to the next;
- the global generators (Python, NumPy, torch) the learner trains with, and the action noise,
  which SB3's ``_setup_learn`` resets: ``ContinueWhereSaved`` puts both back when training starts;
- the ring position of the recent raw states, so that a state keeps its index (peers sample indices).

Gymnasium's MuJoCo envs are ``EzPickle``: pickled, they are rebuilt from their constructor
arguments, a fresh env. ``_EnvPickler`` pickles them by their attributes instead; MuJoCo's
``MjModel`` and ``MjData`` pickle whole and step on bit for bit (tests/test_exact_resume.py).
"""

import copyreg
import gzip
import io
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import cloudpickle
import numpy as np
from gymnasium.utils.ezpickle import EzPickle
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from dpd.agents.random_state import RandomState, set_global_random_state

RESUME_FILE = "resume_state.pkl.gz"


@dataclass
class SavedEnv:
    """A VecNormalize-wrapped env with everything that steps it on: its statistics (pickled as
    SB3 pickles them, without the env), the vectorised env below it, and the discounted returns
    it scales rewards by."""

    statistics: VecNormalize
    venv: VecEnv
    returns: np.ndarray

    @classmethod
    def of(cls, env: VecNormalize) -> "SavedEnv":
        return cls(env, env.venv, env.returns)

    def restore(self) -> VecNormalize:
        env = self.statistics
        env.set_venv(self.venv)  # which zeroes the returns
        env.returns = self.returns
        return env


@dataclass
class ResumeState:
    """One learner's state beyond its model, statistics and buffers (the module docstring)."""

    train_env: SavedEnv
    eval_env: Optional[SavedEnv]  # None before its first evaluation: it is made then
    random_state: RandomState
    action_noise: Optional[ActionNoise]
    states_position: int  # the recent states' ring position (``RawStateBuffer.position``)


def _set_attributes(obj: Any, state: Dict[str, Any]) -> None:
    obj.__dict__.update(state)


class _EnvPickler(cloudpickle.Pickler):
    """cloudpickle, with ``EzPickle`` objects pickled by their attributes (their state), not by
    the constructor arguments that rebuild them fresh."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, EzPickle):
            return copyreg.__newobj__, (type(obj),), dict(obj.__dict__), None, None, _set_attributes
        return super().reducer_override(obj)


def dumps(obj: Any) -> bytes:
    """``obj`` pickled with its envs' whole state (``_EnvPickler``)."""
    buffer = io.BytesIO()
    _EnvPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def write_state(state: Any, path: Path, owner: str) -> None:
    """Write ``state`` (a ``ResumeState``, or what else holds envs) to ``path``, gzipped (a
    MuJoCo env's pickle is mostly zeros: 1.2 MB, 70 kB compressed). What does not pickle (an
    env of ``owner``'s holding a lock, a socket, a handle) is written not at all, with a warning:
    a checkpoint without it still resumes, afresh."""
    try:
        data = dumps(state)
    except Exception as exc:  # whatever a user's env holds that does not pickle
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        warnings.warn(
            f"{owner}: its env does not pickle ({reason}); a run continued from its checkpoints starts its episodes afresh",
            stacklevel=3,
        )
        return
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(data)


def read_state(path: Path) -> Any:
    """What ``write_state`` wrote, or None where there is none: a checkpoint of a dpd before
    resume states, or of an env that did not pickle."""
    if not path.is_file():
        return None
    with gzip.open(path, "rb") as handle:
        return pickle.load(handle)


class ContinueWhereSaved(BaseCallback):
    """Puts back, when training starts (after SB3's ``_setup_learn``, which resets the action
    noise), the global generators and the action noise of the moment the checkpoint was written;
    nothing for a learner that was not resumed from a resume state."""

    def __init__(self, state: Optional[ResumeState]) -> None:
        super().__init__()
        self.state = state

    def _on_training_start(self) -> None:
        if self.state is not None:
            set_global_random_state(self.state.random_state)
            self.model.action_noise = self.state.action_noise

    def _on_step(self) -> bool:
        return True
