"""The checks of a run config that need the learners: algorithm names, hyperparameters against
SB3's signatures, discounts, distribution kinds, backends, and experience sharing.

It exists so that every user error is found before anything is built or written, in one pass
(``check_config``). The checks that need nothing but the config (ranges, choices, loss and
weighting names) are each section's ``check()`` in ``dpd.config``, run by ``check_values``; a
learner's resolved distillation settings are checked by ``DistillConfig.check``.
"""

import inspect
from typing import Any, List

import torch

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.backend import BACKENDS
from dpd.agents.learner import ACTION_NOISES
from dpd.agents.peer_setup import PeerSetup, peer_setups, student_view_config
from dpd.config import DEVICES, RunConfig, check_values
from dpd.envs import check_env, check_env_id
from dpd.errors import UserError, unknown_choice
from dpd.pyexpr import activation_name

# Arguments of SB3 constructors that dpd sets itself.
RESERVED_ALGO_KWARGS = ("env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model")
DISTRIBUTION_LOSSES = ("nll", "kl", "kl_reverse")


def check_config(cfg: RunConfig) -> List[PeerSetup]:
    """Every user error that can be found before anything is built or written."""
    check_env_id(cfg.env, cfg.gym_package_list)  # imports the gym packages first
    check_values(cfg)
    check_device(cfg.device)
    # Its dependencies, its action space and what a student sees of its observation, before anything is written.
    check_env(cfg.env, cfg.env_kwargs, cfg.gym_package_list, view=student_view_config(cfg))
    BACKENDS.get_or_refuse(cfg.backend)
    if cfg.teacher.path and cfg.teacher.algo and cfg.teacher.algo not in ALGORITHMS:
        raise unknown_choice("teacher algorithm", cfg.teacher.algo, ALGORITHMS)
    setups = peer_setups(cfg)
    for setup in setups:
        setup.distill.check(setup.where)
        _check_peer(setup)
    check_group(setups)
    _check_sharing(cfg, setups)
    return setups


def check_device(device: str) -> None:
    """A CUDA device where torch sees no GPU fails in SB3 only once a model is built (or, with
    ``auto``, falls back silently); ask for one that is not there and hear it at once."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"device {device!r}: torch sees no CUDA GPU here (torch {torch.__version__}); valid choices: "
            f"{', '.join(choice for choice in DEVICES if not choice.startswith('cuda'))}"
        )
    if device.startswith("cuda:") and int(device.partition(":")[2]) >= torch.cuda.device_count():
        raise UserError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")


def _check_sharing(cfg: RunConfig, setups: List[PeerSetup]) -> None:
    """Shared experience needs a group of one kind (off-policy peers share replay buffers,
    on-policy peers rollouts), and so does guidance by the leader; PIEKD's distillation of the
    leader needs off-policy peers."""
    on_policy = [f"{setup.spec.name} ({setup.spec.algo})" for setup in setups if not ALGORITHMS[setup.spec.algo].off_policy]
    if cfg.share.act == "episode" and (not cfg.share.enabled or on_policy or cfg.n_envs != 1):
        raise UserError(
            "share.act=episode (one peer acts per episode, all learn from the shared buffer) needs share=on, "
            f"off-policy peers (sac, td3, ddpg) and n_envs=1; got share.enabled={cfg.share.enabled}, "
            f"{len(on_policy)} on-policy peer(s), n_envs={cfg.n_envs}"
        )
    wanted = [name for name, on in (("share", cfg.share.enabled), (f"guide={cfg.guide.mode}", cfg.guide.mode != "none")) if on]
    if not wanted:
        return
    what = " and ".join(wanted)
    if cfg.teacher.path or cfg.peers < 2:
        raise UserError(f"{what} {'work' if len(wanted) > 1 else 'works'} between peers: use peers >= 2 and no teacher")
    if cfg.guide.mode == "distill" and on_policy:
        raise UserError(
            f"guide=distill needs off-policy peers (sac, td3, ddpg), whose critics it distils too; not {', '.join(on_policy)}"
        )
    if cfg.guide.mode == "best" and 0 < len(on_policy) < len(setups):
        raise UserError(
            "guide=best needs peers of one kind, off-policy (sac, td3, ddpg) or on-policy (ppo, a2c), "
            f"but only {', '.join(on_policy)} {'is' if len(on_policy) == 1 else 'are'} on-policy"
        )
    algos = sorted({setup.spec.algo for setup in setups})
    if cfg.guide.mode == "distill" and cfg.guide.critic and len(algos) > 1:
        raise UserError(
            "guide.critic distils critics between peers of one algorithm (SAC's critics are soft, TD3's and DDPG's are "
            f"not); this group has {', '.join(algos)}: set guide.critic=false"
        )
    if cfg.share.enabled and 0 < len(on_policy) < len(setups):
        raise UserError(
            "share needs peers of one kind: off-policy peers (sac, td3, ddpg) share replay buffers and on-policy peers "
            f"(ppo, a2c) rollouts, but only {', '.join(on_policy)} {'is' if len(on_policy) == 1 else 'are'} on-policy"
        )
    off_policy_steps = [
        setup.algo_kwargs.get("gradient_steps", 1) for setup in setups if ALGORITHMS[setup.spec.algo].off_policy
    ]
    if cfg.share.updates == "per_peer" and any(steps < 1 for steps in off_policy_steps):
        raise UserError("share.updates=per_peer multiplies gradient_steps, which must then be a positive count")


def _check_peer(setup: PeerSetup) -> None:
    """What a peer's algorithm must accept: its distillation loss and its hyperparameters."""
    distill, algo, where = setup.distill, setup.spec.algo, setup.where
    learner_class = ALGORITHMS[algo]
    if distill.enabled and distill.loss in DISTRIBUTION_LOSSES and learner_class.distribution_kind == "deterministic":
        raise UserError(f"loss {distill.loss!r} needs a stochastic policy but {where} is deterministic; use distill.loss=mse")
    accepted = set(inspect.signature(learner_class.algo_class.__init__).parameters) - {"self", *RESERVED_ALGO_KWARGS}
    for key in setup.algo_kwargs:
        if key not in accepted:
            raise unknown_choice(f"{algo} hyperparameter (algo_kwargs)", key, accepted)
    policy_kwargs = setup.algo_kwargs.get("policy_kwargs")
    if isinstance(policy_kwargs, dict) and isinstance(policy_kwargs.get("activation_fn"), str):
        activation_name(policy_kwargs["activation_fn"])  # an unknown name fails here, before anything is built
    if "action_noise" in setup.algo_kwargs:
        _check_action_noise(setup.algo_kwargs["action_noise"], where)
    if setup.algo_kwargs.get("use_sde"):
        raise UserError(f"use_sde is not supported ({where}): distillation needs a state-independent Gaussian")


def _check_action_noise(setting: Any, where: str) -> None:
    """``action_noise`` as a config writes it: ``{type: normal or ornstein-uhlenbeck, std: > 0}``."""
    expected = f"action_noise of {where} must be {{type: {' or '.join(ACTION_NOISES)}, std: <positive number>}}"
    if setting is None:
        return
    if not isinstance(setting, dict) or set(setting) != {"type", "std"}:
        raise UserError(f"{expected}, got {setting!r}")
    std = setting["std"]
    if setting["type"] not in ACTION_NOISES or isinstance(std, bool) or not isinstance(std, (int, float)) or not std > 0:
        raise UserError(f"{expected}, got {setting!r}")


def _discount(setup: PeerSetup) -> float:
    default = inspect.signature(ALGORITHMS[setup.spec.algo].algo_class.__init__).parameters["gamma"].default
    return float(setup.algo_kwargs.get("gamma", default))


def check_group(setups: List[PeerSetup], compares_values: bool = True) -> None:
    """Peers' values must estimate the same quantity where they are compared (``compares_values``:
    every peer group; of the teacher-student modes only ``gated``), and KL needs one kind of
    distribution."""
    discounts = {setup.spec.name: _discount(setup) for setup in setups}
    if compares_values and len(set(discounts.values())) > 1:
        listed = ", ".join(f"{name}: {gamma}" for name, gamma in discounts.items())
        raise UserError(f"peers must share one discount to compare values ({listed}); set algo_kwargs.gamma for all")
    kinds = {setup.spec.name: ALGORITHMS[setup.spec.algo].distribution_kind for setup in setups}
    for setup in setups:
        if setup.distill.enabled and setup.distill.loss in ("kl", "kl_reverse") and len(set(kinds.values())) > 1:
            raise UserError(
                f"loss {setup.distill.loss!r} compares distributions of one kind, but the peers mix "
                f"{', '.join(sorted(set(kinds.values())))}; use mse or nll"
            )
