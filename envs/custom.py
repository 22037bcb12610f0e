"""Custom environments as the RL zoo takes them: an env id ``module:EnvClass`` and ``--gym-packages``.

An id ``package.module:EnvClass`` names a ``gymnasium.Env`` class that no one registered; it is
registered here, on the fly, under an id derived from it alone (``package.module.EnvClass-v0``),
so every process that builds the env derives and registers the same id. ``gym_packages`` are
modules imported before an id is looked up: packages that register their envs on import (as
``rl_zoo3.train --gym-packages`` imports them).

Both happen where envs are made (``dpd.envs.factory``), not only on the command line, so that
peers in other processes (``--parallel``, Ray) import and register what the run's config names.
"""

import importlib
import re
from typing import Sequence

import gymnasium as gym

from dpd.errors import UserError

_CLASS_NAME = re.compile(r"^[A-Za-z_]\w*$")  # a Python class name


def _import(module: str, why: str) -> object:
    """Import ``module``; any failure (missing, or raising on import) is the user's, in one line."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # an import runs the package's code: any error is possible
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"cannot import {why} {module!r}: {type(exc).__name__}{': ' + reason if reason else ''}") from None


def import_gym_packages(gym_packages: Sequence[str]) -> None:
    """Import each module, so that the envs it registers on import are known to Gymnasium."""
    for module in gym_packages:
        _import(module, "gym package")


def class_env_id(module: str, cls: str) -> str:
    """The id a ``module:EnvClass`` env is registered under: its dotted path as the name (Gymnasium
    allows no dots in a namespace), version 0. Derived from the two names only, so every process
    agrees on it."""
    return f"{module}.{cls}-v0"


def resolve_env_id(env_id: str, gym_packages: Sequence[str] = ()) -> str:
    """The Gymnasium id to make for ``env_id``, after importing ``gym_packages``. ``module:Name``
    imports the module; if it registered ``Name`` on import, that is the id (Gymnasium's own
    ``module:EnvId`` form), otherwise ``Name`` must be a ``gymnasium.Env`` class of the module,
    registered (once per process) under ``class_env_id``. Any other id is returned as it is, for
    the caller to look up."""
    import_gym_packages(gym_packages)
    module, sep, name = env_id.partition(":")
    if not sep:
        return env_id
    registered = class_env_id(module, name)
    if registered in gym.envs.registry:
        return registered
    imported = _import(module, "the module of env")
    if name in gym.envs.registry:
        return name
    env_class = getattr(imported, name, None)
    if not (_CLASS_NAME.match(name) and isinstance(env_class, type) and issubclass(env_class, gym.Env)):
        raise UserError(f"env {env_id!r}: module {module!r} has no gymnasium.Env class and registered no env {name!r}")
    gym.register(id=registered, entry_point=env_class)
    return registered
