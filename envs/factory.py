"""Environment factory: Gymnasium ids to seeded, optionally normalised SB3 vector envs."""

from typing import List, Optional, Sequence

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from dpd.config import ObservationViewConfig
from dpd.envs.custom import resolve_env_id
from dpd.envs.observation_view import StudentView
from dpd.errors import UserError, unknown_choice

TINY_ENV_ID = "DpdPointReach-v0"


def suggested_env_ids() -> List[str]:
    """The continuous-control ids named in error messages: MuJoCo v5 tasks and the tiny env."""
    names = [
        env_id for env_id, spec in gym.envs.registry.items() if env_id.endswith("-v5") and "mujoco" in str(spec.entry_point)
    ]
    return sorted(names) + [TINY_ENV_ID]


def check_env_id(env_id: str, gym_packages: Sequence[str] = ()) -> str:
    """The Gymnasium id of ``env_id`` (``dpd.envs.custom``: ``module:EnvClass`` ids and
    ``gym_packages``); ids Gymnasium does not know are refused, naming the continuous-control
    ones it does."""
    resolved = resolve_env_id(env_id, gym_packages)
    if resolved not in gym.envs.registry:
        raise unknown_choice("env id", env_id, suggested_env_ids())
    return resolved


def make_env(
    env_id: str,
    seed: int,
    n_envs: int = 1,
    normalize: bool = True,
    norm_obs: bool = True,
    norm_reward: bool = True,
    gamma: float = 0.99,
    training: bool = True,
    env_kwargs: Optional[dict] = None,
    gym_packages: Sequence[str] = (),
    view: Optional[ObservationViewConfig] = None,
) -> VecEnv:
    """A seeded ``DummyVecEnv`` of ``n_envs`` Monitor-wrapped copies, VecNormalize-wrapped if asked.

    ``gamma`` must be the learner's discount: VecNormalize scales rewards by the running std of
    the discounted return, and values are converted back to raw units with the same statistics.
    Evaluation envs pass ``training=False`` (frozen statistics, raw rewards). ``gym_packages``
    are imported first, and a ``module:EnvClass`` id registered, in whichever process builds it.
    ``view``: what a student sees of each observation (``dpd.envs.observation_view``), inside
    VecNormalize, so that it normalises the view; None (or a view that changes nothing): all of it.
    """
    resolved = check_env_id(env_id, gym_packages)
    wrapper = {}
    if view is not None and view.active:
        wrapper = {"wrapper_class": StudentView, "wrapper_kwargs": {"config": view, "env_id": env_id}}
    try:
        venv = make_vec_env(resolved, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs, **wrapper)
    except TypeError as exc:
        raise UserError(f"env {env_id!r} rejected env_kwargs {env_kwargs}: {exc}") from None
    except (gym.error.DependencyNotInstalled, ImportError) as exc:  # e.g. Box2D's or MuJoCo's package
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"env {env_id!r} needs a package that is not installed: {reason}") from None
    if not isinstance(venv.action_space, spaces.Box):
        venv.close()
        raise UserError(
            f"env {env_id!r} has a {type(venv.action_space).__name__} action space; dpd needs continuous (Box) actions"
        )
    if not normalize:
        return venv
    return VecNormalize(
        venv,
        training=training,
        norm_obs=norm_obs,
        norm_reward=norm_reward and training,
        gamma=gamma,
    )


def check_env(
    env_id: str,
    env_kwargs: Optional[dict] = None,
    gym_packages: Sequence[str] = (),
    view: Optional[ObservationViewConfig] = None,
) -> None:
    """Build the env once and close it: an unknown id, a package that does not import, a missing
    dependency, rejected ``env_kwargs``, actions that are not continuous or a ``view`` that does
    not fit the observation fail here, before a run writes anything."""
    make_env(env_id, seed=0, normalize=False, env_kwargs=env_kwargs, gym_packages=gym_packages, view=view).close()
