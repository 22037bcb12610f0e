"""Resolving a run config into one setup per learner: its algorithm, its SB3 hyperparameters and
its distillation settings, with every default filled in.

It exists so that one place decides what each peer gets from which layer (algorithm and env
defaults < run config < ``peer_configs[k]``); the checks (``dpd.agents.checks``), the assembly
(``dpd.agents.assembly``) and the run directory's ``config.yaml`` (``resolved_config``) all
start from its answer.
"""

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.learner import LearnerSpec
from dpd.agents.teacher_loading import student_distill_defaults
from dpd.config import DistillConfig, ObservationViewConfig, RunConfig, build_distill_config, build_distill_settings, merge
from dpd.envs.defaults import env_defaults
from dpd.errors import UserError, unknown_choice

PEER_CONFIG_KEYS = ("algo", "algo_kwargs", "distill")
PEER_DISTILL_DEFAULTS = {"loss": "mse"}  # the paper's choice


@dataclass(frozen=True)
class PeerSetup:
    """Everything needed to build one peer: who it is, its SB3 arguments, how it distills."""

    spec: LearnerSpec
    algo_kwargs: Dict[str, Any]
    distill: DistillConfig

    @property
    def where(self) -> str:
        """The peer as error messages name it, e.g. ``peer0 (ppo)``."""
        return f"{self.spec.name} ({self.spec.algo})"


def peer_setups(cfg: RunConfig) -> List[PeerSetup]:
    """Peer k: algorithm ``algo`` (cycled) or its ``peer_configs[k]`` entry, seed
    ``seed + k * seed_offset``, an equal share of the budget, and its hyperparameters and
    distillation settings merged as: algorithm/env defaults < run config < peer config."""
    setups = []
    for k, (algo, algo_kwargs, distill) in enumerate(_resolve(cfg)):
        if cfg.share.enabled and cfg.share.updates == "per_peer":
            _update_as_if_alone(algo, algo_kwargs, cfg.peers)
        spec = LearnerSpec(
            name="student" if cfg.teacher.path else f"peer{k}",
            algo=algo,
            env_id=cfg.env,
            seed=cfg.seed + k * cfg.seed_offset,
            budget=cfg.total_steps // cfg.peers,
            n_envs=cfg.n_envs,
            normalize_obs=cfg.normalize_obs,
            normalize_reward=cfg.normalize_reward,
            save_replay_buffer=cfg.save_replay_buffer,
            log_formats=",".join(cfg.log_format_list),
            env_kwargs=dict(cfg.env_kwargs),
            gym_packages=",".join(cfg.gym_package_list),
            device=cfg.device,
            verbose=cfg.verbose,
            view=student_view_config(cfg),
        )
        setups.append(PeerSetup(spec, algo_kwargs, distill))
    return setups


def student_view_config(cfg: RunConfig) -> Optional[ObservationViewConfig]:
    """What the run's learner sees of the observation: a teacher's student its ``student.obs``
    (where it sees less than everything), any other learner all of it."""
    return cfg.student.obs if cfg.teacher.path and cfg.student.obs.active else None


def _update_as_if_alone(algo: str, algo_kwargs: Dict[str, Any], peers: int) -> None:
    """``share.updates=per_peer``: each peer updates as if it alone had collected the whole
    group's data. An off-policy peer takes ``gradient_steps`` times ``peers`` updates per own env
    step; an on-policy peer collects ``n_steps / peers`` per rollout, so that it updates once per
    ``n_steps`` group steps, as often as one learner alone, on as many samples (own and peers')."""
    if ALGORITHMS[algo].off_policy:
        steps = algo_kwargs.get("gradient_steps", 1)
        algo_kwargs["gradient_steps"] = steps * peers if steps > 0 else steps
        return
    n_steps = algo_kwargs.get("n_steps", sb3_default(algo, "n_steps"))
    if not isinstance(n_steps, int) or n_steps % peers or n_steps < peers:
        raise UserError(
            f"share.updates=per_peer divides {algo}'s n_steps ({n_steps}) among {peers} peers; "
            f"set algo_kwargs.n_steps to a multiple of {peers}"
        )
    algo_kwargs["n_steps"] = n_steps // peers


def sb3_default(algo: str, name: str) -> Any:
    """The default SB3 declares for the hyperparameter ``name`` of ``algo``'s class."""
    return inspect.signature(ALGORITHMS[algo].algo_class.__init__).parameters[name].default


def _resolve(cfg: RunConfig) -> List[Tuple[str, Dict[str, Any], DistillConfig]]:
    """Each peer's algorithm, hyperparameters and distillation settings as the layers give them
    (before ``share.updates=per_peer`` scales the updates, which a config does not say)."""
    if len(cfg.peer_configs) > cfg.peers:
        raise UserError(f"peer_configs has {len(cfg.peer_configs)} entries for {cfg.peers} peers")
    algos = [name.strip() for name in cfg.algo.split(",")]
    run_distill = {key: value for key, value in asdict(cfg.distill).items() if value is not None}
    peers = []
    for k in range(cfg.peers):
        override = cfg.peer_configs[k] if k < len(cfg.peer_configs) else {}
        for key in override:
            if key not in PEER_CONFIG_KEYS:
                raise unknown_choice(f"key in peer_configs[{k}]", key, PEER_CONFIG_KEYS)
        algo = override.get("algo", algos[k % len(algos)])
        if algo not in ALGORITHMS:
            raise unknown_choice("algorithm", algo, ALGORITHMS)
        if not isinstance(override.get("algo_kwargs", {}), dict) or not isinstance(override.get("distill", {}), dict):
            raise UserError(f"peer_configs[{k}]: algo_kwargs and distill must be mappings")
        build_distill_settings(override.get("distill"), prefix=f"peer_configs[{k}].distill.")  # checks keys and types
        role_defaults = student_distill_defaults(cfg, algo) if cfg.teacher.path else PEER_DISTILL_DEFAULTS
        distill = build_distill_config(ALGORITHMS[algo].distill_defaults, role_defaults, run_distill, override.get("distill"))
        algo_kwargs = merge(merge(env_defaults(cfg.env, algo), cfg.algo_kwargs), override.get("algo_kwargs", {}))
        peers.append((algo, algo_kwargs, distill))
    return peers


def resolved_config(cfg: RunConfig) -> Dict[str, Any]:
    """``cfg`` as a config mapping with every default written out, for ``RUN_DIR/config.yaml``:
    the distillation settings and hyperparameters each peer resolved to, at the top where all
    peers agree on a key and in a ``peer_configs`` entry per peer where they differ. Read back,
    it gives the same peers (``dpd train --config RUN_DIR/config.yaml`` repeats the run), also
    when dpd's defaults change."""
    peers = _resolve(cfg)
    data = cfg.to_dict()
    entries: List[Dict[str, Any]] = [
        {"algo": cfg.peer_configs[k]["algo"]} if k < len(cfg.peer_configs) and "algo" in cfg.peer_configs[k] else {}
        for k in range(len(peers))
    ]
    for section, values in (
        ("algo_kwargs", [algo_kwargs for _, algo_kwargs, _ in peers]),
        ("distill", [asdict(distill) for _, _, distill in peers]),
    ):
        common = _common(values)
        data[section] = common
        for entry, value in zip(entries, values):
            rest = {key: item for key, item in value.items() if key not in common}
            if rest:
                entry[section] = rest
    data["peer_configs"] = entries if any(entries) else []
    return data


def _common(values: List[Mapping[str, Any]]) -> Dict[str, Any]:
    """The keys on which every mapping agrees, with their values."""
    if not values:
        return {}
    first, others = values[0], values[1:]
    return {key: value for key, value in first.items() if all(key in other and other[key] == value for other in others)}
