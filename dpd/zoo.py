"""RL-zoo hyperparameter files (``rl_zoo3``'s ``hyperparams/<algo>.yml``) as dpd config values.

A zoo file maps env ids (and optionally ``default``) to entries such as::

    HalfCheetah-v4:
      normalize: true
      n_envs: 1
      policy: 'MlpPolicy'
      n_timesteps: !!float 1e6
      learning_rate: lin_3e-4
      policy_kwargs: "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256], vf=[256]))"

This module is the one place that turns such an entry into a dpd config layer (``zoo_layer``),
so that ``dpd train --hyperparams FILE.yml`` and a script give the same run. The zoo's own keys
map to dpd's (``n_timesteps`` to ``total_steps``, ``n_envs``, ``normalize`` to
``normalize_obs``/``normalize_reward``, ``env_kwargs``, ``noise_type``/``noise_std`` to
``algo_kwargs.action_noise``); every other key is an algorithm keyword
argument (``algo_kwargs``), checked against SB3's signature with the rest of the config. Python
strings are read without ``eval`` (``dpd.pyexpr``). Keys that need code the zoo would import
(wrappers, callbacks) or that dpd cannot honour are refused, all named in one line, rather than
dropped: a run that silently differs from its file would mislead.
"""

import importlib.util
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

from dpd.config import load_yaml
from dpd.errors import UserError
from dpd.pyexpr import activation_name, parse_python_value

DEFAULT_ENTRY = "default"  # the zoo's fallback entry for envs the file does not name
# Zoo keys dpd does not honour: they need code (wrappers, callbacks, replay buffer classes) or
# change the env in ways dpd's learners do not model.
UNSUPPORTED = (
    "frame_stack",
    "env_wrapper",
    "vec_env_wrapper",
    "callback",
    "monitor_kwargs",
    "replay_buffer_class",
    "replay_buffer_kwargs",
)
# VecNormalize arguments dpd has settings for. Its ``gamma`` is the algorithm's in dpd, and in
# the zoo wherever the entry sets the algorithm's ``gamma``: only then is it accepted.
NORMALIZE_KEYS = {"norm_obs": "normalize_obs", "norm_reward": "normalize_reward"}
POLICIES = ("MlpPolicy",)  # dpd's learners see flat vector observations


def zoo_entry(data: Mapping[str, Any], env_id: str, source: str) -> Dict[str, Any]:
    """The entry the zoo would use for ``env_id``: its own, else ``default``."""
    for name in (env_id, DEFAULT_ENTRY):
        if name in data:
            entry = data[name]
            if not isinstance(entry, Mapping):
                raise UserError(f"{source}: entry {name!r} must be a mapping of hyperparameters, got {entry!r}")
            return dict(entry)
    listed = ", ".join(str(key) for key in data) or "none"
    raise UserError(f"{source} has no entry for {env_id!r} and no {DEFAULT_ENTRY!r} entry; its entries: {listed}")


def _python_value(value: Any, where: str) -> Any:
    return parse_python_value(value, where) if isinstance(value, str) else value


def _normalize_settings(value: Any, where: str, sets_gamma: bool) -> Dict[str, bool]:
    """``normalize`` (a bool, or VecNormalize's keyword arguments as a dict or Python string) as
    ``normalize_obs``/``normalize_reward``. True is VecNormalize's defaults: both on.
    ``sets_gamma``: whether the entry sets the algorithm's gamma, which then overrides VecNormalize's."""
    value = _python_value(value, where)
    if isinstance(value, bool):
        return {"normalize_obs": value, "normalize_reward": value}
    if not isinstance(value, Mapping):
        raise UserError(f"{where}: expected true, false or VecNormalize's keyword arguments, got {value!r}")
    unknown = sorted(set(value) - set(NORMALIZE_KEYS) - ({"gamma"} if sets_gamma else set()))
    if unknown:
        raise UserError(f"{where}: dpd cannot honour VecNormalize's {', '.join(unknown)}; it sets norm_obs and norm_reward")
    settings = {"normalize_obs": True, "normalize_reward": True}  # VecNormalize's defaults
    for key, setting in NORMALIZE_KEYS.items():
        if key in value:
            if not isinstance(value[key], bool):
                raise UserError(f"{where}.{key}: expected true or false, got {value[key]!r}")
            settings[setting] = value[key]
    return settings


def _total_steps(value: Any, where: str) -> int:
    """``n_timesteps``, which zoo files write as ``!!float 1e6``, ``1e6`` (a YAML string) or an integer."""
    try:
        steps = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        steps = float("nan")
    if not math.isfinite(steps) or steps != int(steps):
        raise UserError(f"{where}: expected a whole number of env steps, got {value!r}")
    return int(steps)


def _policy_kwargs(value: Any, where: str) -> Dict[str, Any]:
    value = _python_value(value, where)
    if not isinstance(value, Mapping):
        raise UserError(f"{where}: expected dict(...) of the policy's keyword arguments, got {value!r}")
    value = dict(value)
    if isinstance(value.get("activation_fn"), str):
        value["activation_fn"] = activation_name(value["activation_fn"])
    return value


def _action_noise(entry: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """The zoo's ``noise_type``/``noise_std`` as dpd's ``action_noise`` setting, which the learner
    turns into SB3's noise object once it knows the action space (``dpd.agents.learner``)."""
    if "noise_type" not in entry or "noise_std" not in entry:
        raise UserError(f"{where}: noise_type and noise_std go together")
    noise_type = entry["noise_type"]
    return {"type": noise_type.strip() if isinstance(noise_type, str) else noise_type, "std": entry["noise_std"]}


def entry_layer(entry: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """One zoo entry as a dpd config layer (``where``: the entry's name in error messages)."""
    unsupported = [key for key in entry if key in UNSUPPORTED]
    if unsupported:
        raise UserError(f"{where}: dpd cannot honour the zoo keys {', '.join(unsupported)}; remove them to train without them")
    layer: Dict[str, Any] = {}
    algo_kwargs: Dict[str, Any] = {}
    for key, value in entry.items():
        at = f"{where}.{key}"
        if key == "n_timesteps":
            layer["total_steps"] = _total_steps(value, at)
        elif key == "n_envs":
            layer["n_envs"] = value  # typed and checked by dpd.config
        elif key == "normalize":
            layer.update(_normalize_settings(value, at, sets_gamma="gamma" in entry))
        elif key == "env_kwargs":
            layer["env_kwargs"] = _python_value(value, at)
        elif key == "policy":
            if value not in POLICIES:
                raise UserError(f"{at}: dpd's learners use {', '.join(POLICIES)}, not {value!r}")
            algo_kwargs["policy"] = value
        elif key == "policy_kwargs":
            algo_kwargs["policy_kwargs"] = _policy_kwargs(value, at)
        elif key in ("noise_type", "noise_std"):
            algo_kwargs["action_noise"] = _action_noise(entry, where)
        else:
            algo_kwargs[str(key)] = value  # lin_<x> schedules stay strings: the learner builds them
    if "normalize" not in entry:  # the zoo normalises only where an entry asks
        layer.update(normalize_obs=False, normalize_reward=False)
    if algo_kwargs:
        layer["algo_kwargs"] = algo_kwargs
    return layer


def zoo_file(path: Union[str, Path]) -> Path:
    """``path`` if it exists, else a bare file name (``ppo.yml``) looked up in the installed
    ``rl_zoo3`` wheel's ``hyperparams/`` folder, which ships the zoo's tuned files. The package is
    found without being imported (its imports pull in training code dpd does not need)."""
    path = Path(path)
    if path.exists() or path.parent != Path("."):
        return path
    spec = importlib.util.find_spec("rl_zoo3")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "hyperparams" / path.name
            if candidate.exists():
                return candidate
    return path  # load_yaml names the missing file


def split_entry(spec: str) -> Tuple[str, Optional[str]]:
    """``FILE.yml:ENTRY`` as (file, entry); a bare file has no entry (the env's own is used).
    The zoo tunes ``-v4`` entries, which are the ones to name for the ``-v5`` tasks."""
    file, sep, entry = str(spec).rpartition(":")
    if sep and entry and not entry.startswith(("/", "\\")) and file.endswith((".yml", ".yaml")):
        return file, entry
    return str(spec), None


def zoo_layer(spec: Union[str, Path], env_id: str, algorithms: Optional[Iterable[str]] = None) -> Tuple[Dict[str, Any], str]:
    """The dpd config layer of an entry of a zoo file, and the entry's name in ``FILE: ENTRY`` form.

    ``spec``: ``FILE.yml`` (the entry for ``env_id``, else ``default``) or ``FILE.yml:ENTRY``;
    a bare ``FILE.yml`` that is not on disk is the installed ``rl_zoo3``'s (``zoo_file``).
    ``algorithms``: the algorithm names dpd knows; a file named after one (the zoo's
    ``hyperparams/sac.yml``) sets ``algo`` to it, since its hyperparameters mean nothing to
    another algorithm (explicit flags still win)."""
    file, entry_name = split_entry(str(spec))
    path = zoo_file(file)
    data = load_yaml(path)
    if entry_name is not None and entry_name not in data:
        listed = ", ".join(str(key) for key in data) or "none"
        raise UserError(f"{path} has no entry {entry_name!r}; its entries: {listed}")
    entry = zoo_entry(data, entry_name or env_id, str(path))
    name = entry_name or (env_id if env_id in data else DEFAULT_ENTRY)
    layer = entry_layer(entry, f"{path.name}: {name}")
    if algorithms is not None and path.stem in set(algorithms):
        layer["algo"] = path.stem
    return layer, f"{path}: {name}"
