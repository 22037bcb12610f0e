"""A learner: one SB3 algorithm and its own environment, seen in raw units.

What distillation needs from a learner, whatever its algorithm:
- advance its own training by one iteration without restarting SB3's schedules or logger;
- the raw states it visited (``states``);
- its action distribution and its values on raw states, normalising them with its own
  VecNormalize statistics (without updating them) and returning values in raw return units;
- a distillation update from (states, target distributions, weights) with its own optimizer.
"""

import copy
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from dpd.agents.guidance import GuidanceHook, Guide, adapt_beta, make_guide, search_range
from dpd.agents.random_state import global_random_state
from dpd.agents.resume_state import (
    RESUME_FILE,
    ContinueWhereSaved,
    ResumeState,
    SavedEnv,
    read_state,
    write_state,
)
from dpd.agents.sharing import Experience
from dpd.agents.state_buffer import RawStateBuffer
from dpd.config import DistillConfig, GuideConfig, ObservationViewConfig, ShareConfig, comma_list
from dpd.envs import make_env
from dpd.envs.observation_view import full_size, seen_and_full
from dpd.errors import UserError
from dpd.losses import PolicyOutput, get_loss, with_temperature
from dpd.pyexpr import activation_class

MODEL_FILE = "model.zip"
NORM_FILE = "vecnormalize.pkl"
DISTILL_OPTIM_FILE = "distill_optimizer.pt"
STATES_FILE = "states.npy"
GUIDANCE_FILE = "guidance.pt"  # beta, the leader's actor to follow and the own one at the last election
EVAL_SEED_SHIFT = 10_000  # evaluation envs are seeded away from the training envs


@dataclass(frozen=True)
class LearnerSpec:
    """Who a learner is: enough to rebuild it, and written to the run manifest."""

    name: str
    algo: str
    env_id: str
    seed: int
    budget: int  # env steps this learner trains for
    n_envs: int = 1
    normalize_obs: bool = True
    normalize_reward: bool = True
    save_replay_buffer: bool = True  # off-policy learners only
    log_formats: str = "tensorboard"  # SB3 logger formats in its log folder, comma-separated
    env_kwargs: Dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    gym_packages: str = ""  # modules imported before the env is made, comma-separated (dpd.envs.custom)
    device: str = "cpu"  # torch device of the SB3 model
    verbose: int = 0  # SB3's verbose
    view: Optional[ObservationViewConfig] = None  # a student's view of the observation (student.obs); None: all of it

    def make_env(self, seed: int, **kwargs: Any) -> VecEnv:
        """This learner's env (``dpd.envs.make_env``), importing its ``gym_packages`` first, in
        whichever process builds it; a student sees its view there, in training and evaluation."""
        return make_env(
            self.env_id,
            seed=seed,
            env_kwargs=self.env_kwargs,
            gym_packages=comma_list(self.gym_packages),
            view=self.view,
            **kwargs,
        )

    @property
    def sees_view(self) -> bool:
        """Whether this learner sees less than the env's full observation (``student.obs``)."""
        return self.view is not None and self.view.active


def linear_schedule(value: Any) -> Any:
    """The RL zoo's ``lin_<x>``: a schedule from x down to 0 over training; other values unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            return LinearSchedule(float(value[len("lin_") :]), 0.0, 1.0)
        except ValueError:
            raise UserError(f"bad schedule {value!r}; write lin_<number>, e.g. lin_3e-4") from None
    return value


def sb3_kwargs(algo_kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """A learner's ``algo_kwargs`` as its SB3 constructor takes them. The config keeps plain data
    (it is written to the run manifest and ``config.yaml``); here it becomes objects, as the RL zoo
    builds them: ``lin_<x>`` schedules, an ``activation_fn`` name (``nn.ReLU``) as its class and a
    ``train_freq`` list (``[1, episode]``) as the tuple SB3 expects. A deep copy: SB3 writes into
    ``policy_kwargs`` (A2C adds its optimizer class), and the caller's dict goes to the manifest."""
    kwargs = {key: linear_schedule(value) for key, value in copy.deepcopy(algo_kwargs).items()}
    policy_kwargs = kwargs.get("policy_kwargs")
    if isinstance(policy_kwargs, dict) and isinstance(policy_kwargs.get("activation_fn"), str):
        policy_kwargs["activation_fn"] = activation_class(policy_kwargs["activation_fn"])
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    return kwargs


# dpd's ``action_noise`` setting, ``{type: normal, std: 0.1}`` (the RL zoo's noise_type/noise_std):
# SB3's noise classes by the zoo's names; the noise is Gaussian per action dimension, mean zero.
ACTION_NOISES = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}


def action_noise(setting: Dict[str, Any], n_actions: int) -> ActionNoise:
    """SB3's exploration noise for ``action_noise: {type, std}`` on ``n_actions`` action dimensions."""
    noise_class = ACTION_NOISES[setting["type"]]
    return noise_class(mean=np.zeros(n_actions), sigma=float(setting["std"]) * np.ones(n_actions))


def on_device(output: PolicyOutput, device: torch.device) -> PolicyOutput:
    """``output`` with each tensor on ``device``: peers' targets travel on the CPU and are
    compared on the device of the learner that uses them."""
    return PolicyOutput(*(None if tensor is None else tensor.to(device) for tensor in output))


def make_eval_env(spec: LearnerSpec) -> VecNormalize:
    """An evaluation env: seeded away from training, raw rewards, statistics set from the learner."""
    env = spec.make_env(spec.seed + EVAL_SEED_SHIFT, norm_obs=spec.normalize_obs, norm_reward=False, training=False)
    assert isinstance(env, VecNormalize)
    return env


def copy_obs_statistics(source: VecNormalize, target: VecNormalize) -> None:
    """Give ``target`` the observation statistics of ``source``. A model trained without
    observation normalisation (plain SB3 without VecNormalize) has none: it sees raw observations."""
    if source.norm_obs:
        target.obs_rms = source.obs_rms.copy()


def evaluate_deterministic(
    model: BaseAlgorithm, train_env: VecNormalize, eval_env: VecNormalize, episodes: int
) -> Tuple[float, float]:
    """Mean and std of deterministic episode returns, with the training env's frozen obs statistics."""
    copy_obs_statistics(train_env, eval_env)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    return float(mean), float(std)


class _RecordRawStates(BaseCallback):
    """Stores each raw observation the learner reaches, as it collects its rollout (with the
    full observation beside it, where the learner sees a view: ``Learner.record_states``)."""

    def __init__(self, record: Callable[[], None]) -> None:
        super().__init__()
        self.record = record

    def _on_step(self) -> bool:
        self.record()
        return True


class Learner(ABC):
    """One SB3 algorithm, its VecNormalize-wrapped env and its recent raw states."""

    algo_class: ClassVar[Type[BaseAlgorithm]]
    # "gaussian" (in env units), "squashed_gaussian" (tanh of a Gaussian) or "deterministic"
    distribution_kind: ClassVar[str]
    # Distillation settings this algorithm uses unless the config sets them (with their source).
    distill_defaults: ClassVar[Dict[str, Any]]
    # Whether it learns from a replay buffer, so peers can share transitions and guide it.
    off_policy: ClassVar[bool] = False

    def __init__(self, spec: LearnerSpec, model: BaseAlgorithm, distill: DistillConfig) -> None:
        self.spec = spec
        self.model = model
        self.distill_config = distill
        env = model.get_vec_normalize_env()
        assert env is not None, "dpd learners train on VecNormalize-wrapped envs"
        self.env: VecNormalize = env
        obs_dim = int(np.prod(self.env.observation_space.shape))
        # A student that sees a view keeps the full observation of each state beside it, for its teacher.
        full_dim = full_size(self.env) if spec.sees_view else 0
        self.states = RawStateBuffer(distill.buffer_size, obs_dim, full_dim)
        self.distill_loss = get_loss(distill.loss, kind="policy")
        self.distill_optimizer = torch.optim.Adam(self.actor_parameters(), lr=distill.lr, eps=1e-5)
        self.iterations = 0
        self.stopped = False  # a user callback stopped the training (SB3's on_step returned False)
        self._callback: Optional[BaseCallback] = None
        self._eval_env: Optional[VecNormalize] = None
        self.guidance: Optional[GuidanceHook] = None  # installed by the first ``follow`` (guide=best)
        self._resumed: Optional[ResumeState] = None  # what training puts back when it starts (``continuation``)

    # ----- construction, saving, loading -------------------------------------------------

    @classmethod
    def create(cls, spec: LearnerSpec, algo_kwargs: Dict, distill: DistillConfig) -> "Learner":
        """A fresh learner; ``algo_kwargs`` go to the SB3 constructor."""
        kwargs = sb3_kwargs(algo_kwargs)
        policy = kwargs.pop("policy", "MlpPolicy")
        env = spec.make_env(spec.seed, n_envs=spec.n_envs, norm_obs=spec.normalize_obs, norm_reward=spec.normalize_reward)
        if isinstance(kwargs.get("action_noise"), dict):
            kwargs["action_noise"] = action_noise(kwargs["action_noise"], int(np.prod(env.action_space.shape)))
        model = cls.algo_class(policy, env, seed=spec.seed, device=spec.device, verbose=spec.verbose, **kwargs)
        assert isinstance(env, VecNormalize)
        env.gamma = model.gamma  # reward scaling follows the discounted return the critic learns
        return cls(spec, model, distill)

    def save(self, directory: Path) -> None:
        """A plain SB3 zip (loads with ``PPO.load``), its VecNormalize statistics beside it,
        and what only dpd needs: the distillation optimizer, the recent raw states and the
        resume state, with which a run continued from here goes on exactly as if it had not stopped."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / MODEL_FILE)
        self.env.save(str(directory / NORM_FILE))
        torch.save(self.distill_optimizer.state_dict(), directory / DISTILL_OPTIM_FILE)
        self.states.save(directory / STATES_FILE)
        self._save_guidance(directory)
        self._save_extra(directory)
        write_state(self.resume_state(), directory / RESUME_FILE, self.spec.name)

    def resume_state(self) -> ResumeState:
        """What a run continued from this moment needs beyond the other files of a checkpoint
        (``dpd.agents.resume_state``); the global generators are the ones it trains with now (a
        peer's own, during a request)."""
        eval_env = SavedEnv.of(self._eval_env) if self._eval_env is not None else None
        noise = self.model.action_noise
        return ResumeState(SavedEnv.of(self.env), eval_env, global_random_state(), noise, self.states.position)

    # ----- guidance by the best peer (guide=best, dpd.agents.guidance) ---------------------

    @property
    def guided_actor(self) -> torch.nn.Module:
        """The module whose deterministic action the guidance term compares with the leader's."""
        raise NotImplementedError

    @property
    def guided_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer whose steps the guidance term's gradient joins."""
        raise NotImplementedError

    def guidance_states(self, count: int) -> Optional[np.ndarray]:
        """``count`` raw states to average the guidance term over (None while there are none):
        the learner's recent states."""
        if len(self.states) == 0:
            return None
        return self.states.at(np.random.randint(0, len(self.states), size=count))

    def guidance_advantage(self, obs: torch.Tensor, leader_actions: torch.Tensor, own_actions: torch.Tensor) -> float:
        """The leader's estimated advantage in raw return units; NaN where the learner has no
        action-value critic (PPO, A2C), which ``search_range`` then ignores."""
        return float("nan")

    def guide(self, index: int) -> Guide:
        """A frozen copy of this learner's actor, to guide its peers while it leads."""
        return make_guide(index, self.guided_actor, self.env)

    def follow(self, guide: Optional[Guide], config: GuideConfig) -> Dict[str, float]:
        """A new election: adapt ``beta`` from the distances seen since the last one, then follow
        ``guide`` (``None``: this learner leads, or there is no leader yet)."""
        if self.guidance is None:
            self._install_guidance(GuidanceHook(self, config.batch, config.beta))
        hook = self.guidance
        assert hook is not None
        stats = hook.take_stats()
        if hook.guide is not None:
            search = search_range(config.target_distance, stats["advantage"], config.rho, stats["drift"], config.drift_ratio)
            hook.beta = adapt_beta(hook.beta, stats["distance"], search, config.rate)
        hook.guide = guide
        # The drift of the next period is measured from here (only while following).
        hook.previous = make_guide(self.spec.seed, self.guided_actor, self.env) if guide is not None else None
        return {"beta": hook.beta, **stats}

    def _install_guidance(self, hook: GuidanceHook) -> None:
        self.guidance = hook
        self.guided_optimizer.register_step_pre_hook(hook)

    def _save_guidance(self, directory: Path) -> None:
        if self.guidance is not None:
            hook = self.guidance
            state = {
                "beta": hook.beta,
                "batch": hook.batch_size,
                "guide": hook.guide,
                "previous": hook.previous,
                "seen": hook.seen,
            }
            torch.save(state, directory / GUIDANCE_FILE)

    def _load_guidance(self, directory: Path) -> None:
        if (directory / GUIDANCE_FILE).is_file():
            state = torch.load(directory / GUIDANCE_FILE, weights_only=False)
            self._install_guidance(GuidanceHook(self, state["batch"], state["beta"]))
            assert self.guidance is not None
            self.guidance.guide = state["guide"]
            self.guidance.previous = state.get("previous")  # absent in checkpoints before the drift rule
            self.guidance.seen = state.get("seen", ([], [], []))  # absent in checkpoints before resume states

    def _save_extra(self, directory: Path) -> None:
        """What an algorithm keeps beyond the SB3 zip (off-policy: the replay buffer)."""

    def _load_extra(self, directory: Path) -> None:
        """Restore what ``_save_extra`` wrote."""

    @classmethod
    def load(cls, spec: LearnerSpec, directory: Path, distill: DistillConfig, iterations: int) -> "Learner":
        """Rebuild a learner saved by ``save``. With its resume state it trains on exactly as it
        would have from there; without (a checkpoint of an older dpd, or of an env that does not
        pickle) its episodes in progress start over, reseeded, and one line on stderr says so."""
        resumed: Optional[ResumeState] = read_state(directory / RESUME_FILE)
        if resumed is not None:
            env = resumed.train_env.restore()
        else:
            env = VecNormalize.load(str(directory / NORM_FILE), spec.make_env(spec.seed, n_envs=spec.n_envs, normalize=False))
        # With the env as it was, the zip's last observation is the env's current one: no reset.
        model = cls.algo_class.load(
            directory / MODEL_FILE, env=env, device=spec.device, verbose=spec.verbose, force_reset=resumed is None
        )
        if resumed is None:
            print(
                f"dpd: {directory} holds no resume state: {spec.name}'s environments are reset and reseeded", file=sys.stderr
            )
            # Reseed away from the start so a resumed run does not replay its first episodes.
            model.set_random_seed(spec.seed + model.num_timesteps)
        learner = cls(spec, model, distill)
        learner.distill_optimizer.load_state_dict(torch.load(directory / DISTILL_OPTIM_FILE, map_location=learner.device))
        learner.states.load(directory / STATES_FILE, resumed.states_position if resumed is not None else 0)
        learner._load_guidance(directory)
        learner._load_extra(directory)
        learner.iterations = iterations
        learner._resumed = resumed
        return learner

    # ----- training ----------------------------------------------------------------------

    def start(self, tensorboard_dir: Optional[Path], callback: Optional[BaseCallback] = None) -> None:
        """Set up SB3 once for the whole budget, as ``learn()`` would, logging to one directory.
        ``callback``: the user's SB3 callback (``CallbackList`` for several); one that returns
        False from ``on_step`` stops this learner, as it stops ``learn()``."""
        formats = list(comma_list(self.spec.log_formats)) if tensorboard_dir is not None else []
        if self.spec.verbose >= 1 and "stdout" not in formats:  # SB3's verbose logger prints its tables
            formats.append("stdout")
        logger: Logger = configure(str(tensorboard_dir) if tensorboard_dir else None, formats)
        self.model.set_logger(logger)
        remaining = max(self.spec.budget - self.model.num_timesteps, 0)
        user = [callback] if callback is not None else []
        callbacks = CallbackList([self.continuation(), _RecordRawStates(self.record_states), *self._extra_callbacks(), *user])
        _, callback = self.model._setup_learn(remaining, callbacks, reset_num_timesteps=self.model.num_timesteps == 0)
        callback.on_training_start(locals(), globals())
        self._callback = callback

    def _extra_callbacks(self) -> List[BaseCallback]:
        """Callbacks an algorithm adds to the rollouts (on-policy sharing records its steps)."""
        return []

    def use_env(self, env: VecNormalize) -> None:
        """Train and act in ``env`` from now on, closing the one before (a teacher's env as a
        checkpoint holds it, its episodes going on)."""
        self.env.close()
        self.model.set_env(env, force_reset=False)
        self.env = env

    def continuation(self) -> BaseCallback:
        """Training goes on from the resume state the learner was loaded with, once: its
        evaluation env comes back as it was (evaluations before, as ``dpd eval``'s, take a fresh
        one), and the returned callback puts back the generators and action noise when training
        starts (``ContinueWhereSaved``). ``start`` adds it; SB3's own ``learn()`` (dpd bench's
        ``sb3`` runs) takes it among its callbacks."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None and resumed.eval_env is not None:
            self._eval_env = resumed.eval_env.restore()
        return ContinueWhereSaved(resumed)

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def done(self) -> bool:
        return self.num_timesteps >= self.spec.budget or self.stopped

    @property
    def steps_per_iteration(self) -> int:
        """Env steps one ``train_iteration`` takes."""
        return self.model.n_envs

    @property
    def planned_steps(self) -> int:
        """Env steps this learner will have taken when done (SB3 finishes its last iteration)."""
        per_iteration = self.steps_per_iteration
        return -(-self.spec.budget // per_iteration) * per_iteration

    @property
    def logger(self) -> Logger:
        return self.model.logger

    @abstractmethod
    def train_iteration(self, run_steps_before: int, update: str = "rl") -> int:
        """Collect and train for one iteration; return the env steps it took.

        ``run_steps_before`` is the whole run's env steps before this iteration, logged as
        ``time/run_total_steps`` so curves can be compared at equal total steps. ``update``:
        ``rl`` (the algorithm's own update), ``critic`` (its update with the actor frozen: the
        critic learns the value of the current policy, which a student gated by its teacher's
        advantage needs) or ``none`` (collect only).
        """

    def _rl_update(self, update: str, train: Callable[[], None]) -> None:
        """Run the algorithm's ``train`` as ``update`` asks."""
        if update == "none":
            return
        if update == "rl":
            train()
            return
        actor = self.actor_parameters()
        for parameter in actor:
            parameter.requires_grad_(False)  # no gradient: the optimizers skip these
        try:
            train()
        finally:
            for parameter in actor:
                parameter.requires_grad_(True)

    def parameters_finite(self) -> bool:
        """Whether every parameter of the policy (actor, critics, target networks) is finite:
        a learner that turned NaN must neither train on nor be checkpointed."""
        return all(bool(torch.isfinite(parameter).all()) for parameter in self.model.policy.parameters())

    def sound(self) -> bool:
        """Whether it may be checkpointed as it is (``Trainer``): in this process, it always
        answers, so its parameters decide."""
        return self.parameters_finite()

    def episode_returns(self) -> Tuple[float, ...]:
        """Raw returns of the last finished training episodes (SB3 keeps up to 100), oldest first."""
        return tuple(float(info["r"]) for info in list(self.model.ep_info_buffer or []))

    @property
    def gradient_updates(self) -> int:
        """Gradient updates of the RL algorithm so far (SB3's ``_n_updates``)."""
        return int(getattr(self.model, "_n_updates", 0))

    def recent_return(self, episodes: int) -> float:
        """Mean raw return of the last ``episodes`` finished training episodes (NaN before the
        first): Monitor sits inside VecNormalize, so SB3's episode records are unscaled."""
        returns = [info["r"] for info in list(self.model.ep_info_buffer or [])[-episodes:]]
        return float(np.mean(returns)) if returns else float("nan")

    def log(self, metrics: Dict[str, float], step: int) -> None:
        """Record scalars (an evaluation, say) and write them to TensorBoard at ``step``."""
        for key, value in metrics.items():
            self.logger.record(key, value)
        self.logger.dump(step=step)

    def finish(self) -> None:
        """Write the last records (each write flushes TensorBoard). None left (the final evaluation
        has just been written): nothing to write, and SB3's stdout format would warn of an empty table."""
        if self.logger.name_to_value:
            self.logger.dump(step=self.num_timesteps)

    # ----- what distillation needs, in raw units ------------------------------------------

    def current_states(self) -> Tuple[np.ndarray, np.ndarray]:
        """The raw observation of the env's current step, per env, as this learner sees it and in
        full (one array where it sees the full observation): the student's state and what its
        teacher labels."""
        return seen_and_full(self.env)

    def record_states(self) -> None:
        """Add the current step's raw states to ``states`` (with the full ones where it keeps them)."""
        self.states.add(*self.current_states())

    @property
    def device(self) -> torch.device:
        """Where the policy's tensors live (``device``); what a learner hands out is on the CPU."""
        return self.model.device

    def normalize(self, raw_obs: np.ndarray) -> torch.Tensor:
        """Raw observations as this learner's policy sees them (statistics are not updated), on its device."""
        normalized = self.env.normalize_obs(np.asarray(raw_obs, dtype=np.float32))
        return torch.as_tensor(normalized, dtype=torch.float32, device=self.device)

    def to_raw_return(self, values: np.ndarray) -> np.ndarray:
        """Undo VecNormalize's reward scaling: values trained on ``r / sqrt(ret_var + eps)``."""
        return self.env.unnormalize_reward(values)

    def from_raw_return(self, values: np.ndarray) -> np.ndarray:
        """Raw return units in this learner's reward scale (``to_raw_return`` undone, unclipped)."""
        env = self.env
        return values / np.sqrt(env.ret_rms.var + env.epsilon) if env.norm_reward else values

    @property
    def action_space_shape(self) -> Tuple[int, ...]:
        return tuple(self.model.action_space.shape)

    @property
    def gamma(self) -> float:
        return float(self.model.gamma)

    @abstractmethod
    def action_distribution(self, obs: torch.Tensor) -> PolicyOutput:
        """The policy's output on normalised observations (with gradients)."""

    def express_target(self, target: PolicyOutput, target_kind: str) -> PolicyOutput:
        """A peer's output in this learner's distribution space: unchanged for a peer of the same
        kind, otherwise the peer's env-space action as the mean (enough for ``mse`` and ``nll``)."""
        if target_kind == self.distribution_kind:
            return target
        return PolicyOutput(target.env_action, None, target.env_action)

    def scale_action(self, action: torch.Tensor) -> torch.Tensor:
        """Env units to [-1, 1], as SB3's ``policy.scale_action`` (which works on numpy only)."""
        low, high = self._action_bounds(action.device)
        return 2.0 * (action - low) / (high - low) - 1.0

    def unscale_action(self, scaled: torch.Tensor) -> torch.Tensor:
        """[-1, 1] to env units."""
        low, high = self._action_bounds(scaled.device)
        return low + 0.5 * (scaled + 1.0) * (high - low)

    def _action_bounds(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """The action space's bounds as tensors on ``device`` (that of the actions they bound)."""
        space = self.model.action_space
        low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
        return low, torch.as_tensor(space.high, dtype=torch.float32, device=device)

    # ----- shared experience (share=on; dpd.agents.sharing, dpd.agents.rollout_sharing) ------

    def start_sharing(self, config: ShareConfig) -> None:
        """From now on, keep own experience for the peers and learn from theirs."""
        raise UserError(f"{self.spec.algo} cannot share experience")

    def take_transitions(self) -> Experience:
        """Own experience since the last hand-over, raw, for the peers."""
        raise UserError(f"{self.spec.algo} cannot share experience")

    def add_transitions(self, batches: Sequence[Experience]) -> int:
        """Peers' experience to learn from; returns how many transitions."""
        raise UserError(f"{self.spec.algo} cannot share experience")

    @abstractmethod
    def normalized_values(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's values on normalised observations, in the learner's reward units."""

    @abstractmethod
    def actor_parameters(self) -> List[torch.nn.Parameter]:
        """Parameters that distillation trains: those the action distribution depends on."""

    def policy_on(self, raw_obs: np.ndarray) -> PolicyOutput:
        """Output on raw states, no gradients, with the action clipped to the env's bounds as
        the env would: a peer's target, on the CPU (peers may live on other devices and processes)."""
        with torch.no_grad():
            output = self.action_distribution(self.normalize(raw_obs))
        low, high = self._action_bounds(self.device)
        return on_device(output._replace(action=torch.clamp(output.env_action, low, high)), torch.device("cpu"))

    def values_on(self, raw_obs: np.ndarray) -> np.ndarray:
        """Values on raw states in raw return units."""
        with torch.no_grad():
            values = self.normalized_values(self.normalize(raw_obs)).cpu().numpy().reshape(-1)
        return self.to_raw_return(values)

    def distill_update(self, raw_obs: np.ndarray, target: PolicyOutput, weights: np.ndarray, step_scale: float = 1.0) -> float:
        """One gradient step of the weighted distillation loss towards ``target``, its size
        ``step_scale`` times ``distill.lr``. A weight on the step is a factor on the learning rate,
        not on the loss: Adam divides most of a loss's scale out of its steps."""
        student = self.action_distribution(self.normalize(raw_obs))
        target = with_temperature(on_device(target, self.device), self.distill_config.temperature)
        loss = self.distill_loss(student, target, torch.as_tensor(weights, dtype=torch.float32, device=self.device))
        self.distill_optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.actor_parameters(), self.distill_config.max_grad_norm)
        for group in self.distill_optimizer.param_groups:
            group["lr"] = self.distill_config.lr * step_scale
        self.distill_optimizer.step()
        return float(loss.item())

    # ----- evaluation ----------------------------------------------------------------------

    def evaluate(self, episodes: int) -> Tuple[float, float]:
        """Deterministic return (mean, std) on a separate env with frozen obs statistics."""
        if self._eval_env is None:
            self._eval_env = make_eval_env(self.spec)
        return evaluate_deterministic(self.model, self.env, self._eval_env, episodes)

    def close(self) -> None:
        self.env.close()
        if self._eval_env is not None:
            self._eval_env.close()
