"""A learner of a dpd run, written in the RL zoo's layout so that ``python -m rl_zoo3.enjoy`` runs it.

The zoo (``rl_zoo3.exp_manager``) saves an experiment as::

    LOG_DIR/<algo>/<env>_<id>/<env>.zip                 the SB3 model
    LOG_DIR/<algo>/<env>_<id>/<env>/vecnormalize.pkl    VecNormalize statistics (entries with normalize)
    LOG_DIR/<algo>/<env>_<id>/<env>/config.yml          the entry's hyperparameters, sorted (yaml.dump)
    LOG_DIR/<algo>/<env>_<id>/<env>/args.yml            the command line's arguments, sorted (yaml.dump)

and ``enjoy`` loads the experiment with the highest ``<id>`` unless told one (``--exp-id``). A dpd
checkpoint already holds a plain SB3 zip and its VecNormalize statistics, so an export copies
them and writes the two YAML files from the run's manifest, with the values the zoo's own files
would hold (``n_timesteps``, ``normalize``, the hyperparameters, ``policy_kwargs`` as a Python
string). It needs neither SB3 nor rl_zoo3. The experiment is written beside its final name and
renamed when complete, so a failed export leaves no half experiment for ``enjoy`` to pick up.
"""

import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

import yaml

from dpd.config import comma_list
from dpd.errors import UserError
from dpd.pyexpr import format_python_value
from dpd.rundir import learner_files, make_directory

MODEL_FILE = "model.zip"  # a dpd checkpoint's files (dpd.agents.learner)
NORM_FILE = "vecnormalize.pkl"
PYTHON_STRING_KEYS = ("policy_kwargs",)  # the zoo writes these as Python source
DPD_ENVS = "dpd.envs"  # the module that registers dpd's own envs (DpdPointReach-v0): enjoy's --gym-packages


def export_gym_packages(spec: Mapping[str, Any]) -> List[str]:
    """The modules ``enjoy`` must import for the learner's env: the run's ``gym_packages``, and
    ``dpd.envs`` for dpd's own envs."""
    packages = list(comma_list(str(spec.get("gym_packages", ""))))
    if spec["env_id"].startswith("Dpd") and DPD_ENVS not in packages:
        packages.append(DPD_ENVS)
    return packages


def enjoy_command(experiment: Path, gym_packages: Sequence[str] = ()) -> str:
    """The ``rl_zoo3.enjoy`` command that runs an exported experiment, importing ``gym_packages``
    (``export_gym_packages``) first."""
    env_id, _, exp_id = experiment.name.rpartition("_")
    algo, folder = experiment.parent.name, experiment.parent.parent
    packages = f" --gym-packages {' '.join(gym_packages)}" if gym_packages else ""
    return f"python -m rl_zoo3.enjoy --algo {algo} --env {env_id} -f {folder} --exp-id {exp_id}{packages} --no-render"


def latest_run_id(algo_dir: Path, env_id: str) -> int:
    """The highest ``<id>`` of ``<env>_<id>`` experiments in ``algo_dir`` (0: none), as ``rl_zoo3.utils``."""
    pattern = re.compile(re.escape(env_id) + r"_(\d+)")
    ids = [int(match.group(1)) for path in algo_dir.glob(f"{env_id}_*") if (match := pattern.fullmatch(path.name))]
    return max(ids, default=0)


def normalize_entry(spec: Mapping[str, Any]) -> Any:
    """The zoo's ``normalize`` for a learner's VecNormalize settings: a bool, or its keyword arguments as a string."""
    obs, reward = bool(spec["normalize_obs"]), bool(spec["normalize_reward"])
    if obs == reward:
        return obs
    return f"dict(norm_obs={obs}, norm_reward={reward})"


def zoo_hyperparams(spec: Mapping[str, Any], algo_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """What the zoo's ``config.yml`` would hold for the entry that trains this learner."""
    hyperparams: Dict[str, Any] = {"policy": "MlpPolicy"}
    for key, value in algo_kwargs.items():
        if key == "action_noise" and isinstance(value, Mapping):  # dpd's spelling of the zoo's two keys
            hyperparams.update(noise_type=value["type"], noise_std=value["std"])
        else:
            hyperparams[key] = format_python_value(value) if key in PYTHON_STRING_KEYS else value
    hyperparams.update(n_timesteps=int(spec["budget"]), n_envs=int(spec["n_envs"]), normalize=normalize_entry(spec))
    if spec.get("env_kwargs"):
        hyperparams["env_kwargs"] = dict(spec["env_kwargs"])
    return hyperparams


def zoo_args(spec: Mapping[str, Any], out_dir: Path, gym_packages: List[str]) -> Dict[str, Any]:
    """What the zoo's ``args.yml`` would hold: the arguments of a ``rl_zoo3.train`` that trained
    this learner (``enjoy`` reads ``env_kwargs`` from it)."""
    return {
        "algo": spec["algo"],
        "env": spec["env_id"],
        "env_kwargs": dict(spec["env_kwargs"]) or None,
        "eval_env_kwargs": None,
        "gym_packages": gym_packages,
        "hyperparams": None,
        "log_folder": str(out_dir),
        "n_timesteps": int(spec["budget"]),
        "seed": int(spec["seed"]),
        "device": "cpu",
        "vec_env": "dummy",
        "trained_agent": "",
        "uuid": False,
        "verbose": 1,
    }


def _dump_sorted(path: Path, values: Mapping[str, Any]) -> None:
    """YAML as the zoo writes it: an OrderedDict of the sorted keys, dumped with PyYAML's default dumper."""
    with open(path, "w") as handle:
        yaml.dump(OrderedDict((key, values[key]) for key in sorted(values)), handle)


class ZooExport(NamedTuple):
    """An exported experiment: its directory (``out_dir/<algo>/<env>_<id>``) and the modules
    ``enjoy`` must import for its env (``--gym-packages``)."""

    experiment: Path
    gym_packages: List[str]


def export_zoo(run_path: Path, out_dir: Path, learner: Optional[str] = None) -> ZooExport:
    """Write one learner of the run at ``run_path`` as a new zoo experiment under ``out_dir``."""
    manifest, spec, source = learner_files(run_path, learner)
    if spec.get("view"):
        raise UserError(
            f"{spec['name']} sees a view of the observation (student.obs), which the RL zoo's enjoy would not build; "
            "export it with --onnx"
        )
    if not (source / MODEL_FILE).is_file() or not (source / NORM_FILE).is_file():
        raise UserError(f"checkpoint {source} is incomplete: missing {MODEL_FILE} or {NORM_FILE}")
    resolved = {peer["name"]: peer["algo_kwargs"] for peer in manifest.get("resolved_peers", [])}
    algo, env_id = spec["algo"], spec["env_id"]
    if ":" in env_id:  # the zoo looks envs up by registered id, and a ``:`` in a folder name breaks its paths
        raise UserError(
            f"env {env_id!r} is a module:EnvClass id, which the RL zoo cannot look up; register the env in a package "
            "(gymnasium.register on import) and train with --gym-packages to export it"
        )
    gym_packages = export_gym_packages(spec)
    algo_dir = out_dir / algo
    made = make_directory(algo_dir, "export dir")
    target = algo_dir / f"{env_id}_{latest_run_id(algo_dir, env_id) + 1}"
    partial = algo_dir / f".{target.name}.partial"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        params = partial / env_id
        params.mkdir(parents=True)
        shutil.copyfile(source / MODEL_FILE, partial / f"{env_id}.zip")
        hyperparams = zoo_hyperparams(spec, resolved.get(spec["name"], {}))
        if hyperparams["normalize"]:  # the zoo saves and loads the statistics only then
            shutil.copyfile(source / NORM_FILE, params / NORM_FILE)
        _dump_sorted(params / "config.yml", hyperparams)
        _dump_sorted(params / "args.yml", zoo_args(spec, out_dir, gym_packages))
        partial.rename(target)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise UserError(f"cannot write {target}: {exc}") from None
    return ZooExport(target, gym_packages)
