"""Run configuration: typed dataclasses, YAML files and ``--set key=value`` overrides.

Precedence, lowest first: the defaults below, the per-env defaults of ``dpd.envs.defaults`` (for
``algo_kwargs``), a ``--config FILE.yaml``, ``--set`` overrides, explicit command-line flags.
Unknown keys and ill-typed values are user errors that name the valid keys.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from dpd.errors import UserError, unknown_choice


@dataclass
class DistillConfig:
    """How a learner distills from its peers.

    Keys left at ``None`` take the learner's algorithm's default (``dpd.agents.algorithms``), so a
    mixed PPO + SAC group gets sensible cadences for both; set a key to apply it to every peer.
    """

    enabled: bool = True
    loss: Optional[str] = None  # peers: mse (the paper's); a student: kl where it and its teacher share a distribution kind
    weighting: str = "soft"
    alpha: Optional[float] = None
    every: Optional[int] = None  # learner iterations between distillation rounds
    start: int = 0  # learner env steps before the first distillation round
    steps: Optional[int] = None  # gradient steps per round
    batch: Optional[int] = None
    lr: Optional[float] = None
    max_grad_norm: float = 0.5
    temperature: float = 1.0  # kl, kl_reverse: the teacher's standard deviation is multiplied by it
    buffer_size: Optional[int] = None
    combine: str = "best"  # with N > 2 peers: "best" (per state, the peer with the highest value) or "round_robin"
    # Peers only. "return": distill only from peers whose mean raw return over their last
    # gate_episodes training episodes is higher than the learner's own ("none": from every peer).
    gate: str = "none"
    gate_episodes: int = 10

    def due(self, iterations: int, env_steps: int) -> bool:
        """Whether a learner that has just finished iteration ``iterations`` at ``env_steps``
        distills now: every ``every`` iterations, once it has taken ``start`` env steps."""
        return self.enabled and env_steps >= self.start and iterations % self.every == 0


@dataclass
class EvalConfig:
    """Deterministic evaluation on a separate env with the learner's frozen obs statistics."""

    every: int = 50_000  # learner env steps between evaluations (0: only at the end)
    episodes: int = 5
    final_episodes: int = 10


@dataclass
class TeacherConfig:
    """Teacher-student distillation: a trained SB3 model teaches the run's single learner.

    Modes: ``offline`` (the student regresses on states the teacher visits), ``online`` (the
    student acts, the teacher labels its states), ``kickstart`` (the student's RL plus lambda
    times distillation on its own states), ``gated`` (``online`` weighted by the disadvantage
    weight of ``xi = V_teacher - V_student``).
    """

    path: str = ""  # the teacher's SB3 zip; empty: no teacher (a peer group)
    norm: str = ""  # its VecNormalize statistics; default: vecnormalize.pkl beside the zip, if any
    algo: str = ""  # its algorithm; default: detected from the zip
    mode: str = "online"
    kickstart_lambda: float = 1.0  # lambda at the start of training
    kickstart_schedule: str = "linear"  # constant | linear (to 0 at the end) | exponential
    kickstart_half_life: float = 0.1  # exponential: fraction of training over which lambda halves
    agreement_tolerance: float = 0.1  # fidelity: actions agree when every dimension is this close, in [-1, 1] units


@dataclass
class RunConfig:
    env: str = "HalfCheetah-v5"
    algo: str = "ppo"  # one algorithm for every peer, or a comma-separated list cycled over the peers
    peers: int = 2
    total_steps: int = 1_000_000  # summed over peers: each gets total_steps // peers
    seed: int = 0
    seed_offset: int = 1000  # peer k uses seed + k * seed_offset
    n_envs: int = 1
    normalize_obs: bool = True
    normalize_reward: bool = True
    # Env steps of a learner's turn before the next peer's (at least one iteration). PPO and A2C
    # peers still alternate every iteration; off-policy peers, whose iterations are single steps,
    # alternate every 1000 steps, which keeps each learner's networks in the CPU's caches.
    turn_steps: int = 1000
    checkpoint_every: int = 100_000  # run env steps between checkpoints (0: only at the end)
    # Where peers live: "local" (this process, one after another), "process" (one process per
    # peer, --parallel) or "ray" (Ray actors, at ray_address or a local instance). Same results.
    backend: str = "local"
    ray_address: str = ""
    save_replay_buffer: bool = True  # off-policy learners: checkpoint the replay buffer for an exact resume
    algo_kwargs: Dict[str, Any] = field(default_factory=dict)  # passed to the SB3 constructor
    env_kwargs: Dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # Per-peer overrides, one mapping per peer: {algo, algo_kwargs, distill} merged over the above.
    peer_configs: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def config_keys(cls: type = RunConfig, prefix: str = "") -> List[str]:
    """Every settable dotted key, e.g. ``distill.alpha``."""
    keys: List[str] = []
    for f in dataclasses.fields(cls):
        hint = get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += config_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def parse_scalar(text: str) -> Any:
    """YAML-parse a command-line value, reading ``1e-4`` as a number (YAML 1.1 does not)."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
    return value


def parse_overrides(items: List[str]) -> Dict[str, Any]:
    """``["distill.alpha=0.75", "algo_kwargs.n_steps=1024"]`` to a nested dict."""
    nested: Dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        parts = key.strip().split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = parse_scalar(text)
    return nested


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    """Recursive dict merge; ``override`` wins."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """A YAML mapping from a file; missing files and bad YAML are user errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return data


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check one value against its field type, converting where it is unambiguous."""
    if get_origin(hint) is Union:  # Optional[X]
        if value is None:
            return None
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key {key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise UserError(f"config key {key}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"config key {key}: expected a string, got {value!r}")
        return value
    if get_origin(hint) is list:
        if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
            raise UserError(f"config key {key}: expected a list of mappings, got {value!r}")
        return [dict(item) for item in value]
    if not isinstance(value, Mapping):
        raise UserError(f"config key {key}: expected a mapping, got {value!r}")
    return dict(value)


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_choice("config key", prefix + str(key), config_keys(cls, prefix))
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if isinstance(value, bool) and "enabled" in {f.name for f in dataclasses.fields(hint)}:
                value = {"enabled": value}  # `distill: off` (YAML's off is false) for `distill: {enabled: false}`
            if not isinstance(value, Mapping):
                raise UserError(f"config key {prefix}{key}: expected a mapping of {', '.join(config_keys(hint))}")
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(prefix + key, value, hint)
    return cls(**kwargs)


def build_distill_config(*layers: Optional[Mapping[str, Any]], prefix: str = "distill.") -> DistillConfig:
    """A ``DistillConfig`` from mappings merged in order (later wins)."""
    merged: Dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = merge(merged, layer)
    return _build(DistillConfig, merged, prefix)


def build_config(*layers: Optional[Mapping[str, Any]]) -> RunConfig:
    """A ``RunConfig`` from mappings merged in order (later wins), with every key checked."""
    merged: Dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = merge(merged, layer)
    return _build(RunConfig, merged)
