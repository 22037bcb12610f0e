"""Shared experience between on-policy peers (PPO, A2C): each learner's update uses its own
rollout and its peers' latest rollouts, corrected by importance weights (SEAC; Christianos,
Schäfer, Albrecht, NeurIPS 2020).

A peer's rollout travels as the collector saw it: raw observations and rewards, the actions it
sampled and its log-probabilities of them (``RolloutBatch``, recorded by ``RolloutRecorder``).
The learner that receives it works in its own units: it normalises the observations and rewards
with its own VecNormalize statistics, bootstraps truncated episodes and computes values and GAE
advantages with its own critic (``peer_rollout_buffer``), exactly as SB3 does for its own rollout.

The update (``weighted_update``) is SB3's PPO (or A2C) update on the own and peer samples mixed in
one shuffled buffer, with a weight per sample on the policy and value losses: 1 for own samples,
``share.weight * min(pi_self(a|s) / pi_collector(a|s), share.ratio_clip)`` for a peer's, the
ratio taken with the learner's policy before the update. During PPO's epochs the clipped ratio
``pi / pi_before`` keeps its usual trust region around the learner's own policy, so a peer sample's
total correction is ``pi / pi_collector`` as in SEAC, with the constant part truncated as V-trace
truncates (Espeholt et al. 2018). With identical policies every weight is 1 and the update is
PPO's (A2C's) on the concatenated data.
"""

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

if TYPE_CHECKING:
    from dpd.agents.on_policy import OnPolicyLearner


@dataclass(frozen=True)
class RolloutBatch:
    """Consecutive steps of one peer's vectorised env, as the collector saw them.

    Rows are env steps, columns the collector's ``n_envs`` envs. ``episode_starts[t]`` marks an
    observation that begins an episode (SB3's convention); ``last_observations`` and
    ``last_dones`` are the state after the final row, for the bootstrap of unfinished episodes.
    A truncated (time-limit) step keeps its raw terminal observation, so the receiver can
    bootstrap it with its own critic, as SB3 does with its own.
    """

    observations: np.ndarray  # (rows, n_envs, *obs_shape), raw
    actions: np.ndarray  # (rows, n_envs, action_dim), the sampled (unclipped) actions
    log_probs: np.ndarray  # (rows, n_envs), the collector's log pi(a|s)
    rewards: np.ndarray  # (rows, n_envs), raw
    episode_starts: np.ndarray  # (rows, n_envs)
    truncated: np.ndarray  # (rows, n_envs), bool: the episode ended by its time limit at this step
    terminal_observations: np.ndarray  # (rows, n_envs, *obs_shape), raw; zeros where not truncated
    last_observations: np.ndarray  # (n_envs, *obs_shape), raw
    last_dones: np.ndarray  # (n_envs,)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def transitions(self) -> int:
        return int(self.rewards.size)

    def arrays(self) -> Dict[str, np.ndarray]:
        """The fields by name (to save with ``np.savez``: arrays, not pickles)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


class RolloutRecorder(BaseCallback):
    """Records the raw steps of a learner's rollouts while ``recording`` (``share=on``), until
    ``take`` hands them over. SB3's rollout buffer holds normalised observations and rewards with
    the collector's own value bootstrap folded in, so the raw steps are recorded as they happen."""

    def __init__(self, env: VecNormalize) -> None:
        super().__init__()
        self.env = env
        self.recording = False
        self._rows: List[tuple] = []
        self._raw_obs: Optional[np.ndarray] = None  # the observation the next action is taken in
        self._episode_starts: Optional[np.ndarray] = None

    def _on_rollout_start(self) -> None:
        self._raw_obs = self.env.get_original_obs().copy()
        self._episode_starts = np.asarray(self.model._last_episode_starts, dtype=np.float32).copy()

    def _on_step(self) -> bool:
        if not self.recording:
            return True
        dones, infos = self.locals["dones"], self.locals["infos"]
        truncated = np.array([bool(done and info.get("TimeLimit.truncated", False)) for done, info in zip(dones, infos)])
        terminal = np.zeros_like(self._raw_obs)
        venv = self.env.venv
        assert isinstance(venv, DummyVecEnv), "dpd builds DummyVecEnvs"
        for index in np.flatnonzero(truncated):
            # VecNormalize hands out normalised terminal observations; the env below keeps them raw.
            terminal[index] = venv.buf_infos[index]["terminal_observation"]
        log_probs = self.locals["log_probs"].detach().cpu().numpy().reshape(-1)
        raw_rewards = self.env.get_original_reward().astype(np.float32)
        actions = self.locals["actions"].copy()
        self._rows.append((self._raw_obs, actions, log_probs, raw_rewards, self._episode_starts, truncated, terminal))
        self._raw_obs = self.env.get_original_obs().copy()
        self._episode_starts = np.asarray(dones, dtype=np.float32).copy()
        return True

    def take(self) -> RolloutBatch:
        """The steps recorded since the last ``take``, oldest first."""
        assert self._raw_obs is not None and self._episode_starts is not None, "no rollout recorded yet"
        columns = [np.stack(column) for column in zip(*self._rows)] if self._rows else self._empty()
        observations, actions, log_probs, rewards, starts, truncated, terminal = columns
        self._rows = []
        return RolloutBatch(
            observations, actions, log_probs, rewards, starts, truncated, terminal, self._raw_obs.copy(), self._episode_starts
        )

    def _empty(self) -> List[np.ndarray]:
        n_envs, obs_shape = self.env.num_envs, self.env.observation_space.shape
        action_dim = int(np.prod(self.env.action_space.shape))
        obs = np.zeros((0, n_envs, *obs_shape), dtype=np.float32)
        per_env = np.zeros((0, n_envs), dtype=np.float32)
        return [obs, np.zeros((0, n_envs, action_dim), dtype=np.float32), per_env, per_env, per_env, per_env.astype(bool), obs]


def peer_rollout_buffer(learner: "OnPolicyLearner", batch: RolloutBatch) -> RolloutBuffer:
    """A peer's rollout as the learner's own rollout buffer would hold it: observations and
    rewards in the learner's normalised units, truncated episodes bootstrapped, values and GAE
    advantages from the learner's critic, and ``log_probs`` of the learner's policy (before its
    update), the reference of PPO's ratio."""
    model = learner.model
    rows, n_envs = batch.rewards.shape
    buffer = RolloutBuffer(
        rows,
        model.observation_space,
        model.action_space,
        model.device,
        gae_lambda=model.gae_lambda,
        gamma=model.gamma,
        n_envs=n_envs,
    )
    observations = learner.normalize(batch.observations.reshape(rows * n_envs, -1))
    actions = torch.as_tensor(batch.actions.reshape(rows * n_envs, -1), dtype=torch.float32, device=model.device)
    rewards = learner.env.normalize_reward(batch.rewards).astype(np.float32)
    with torch.no_grad():
        values, log_probs, _ = model.policy.evaluate_actions(observations, actions)
        if batch.truncated.any():
            where = np.nonzero(batch.truncated)
            terminal_values = model.policy.predict_values(learner.normalize(batch.terminal_observations[where]))
            rewards[where] += model.gamma * terminal_values.reshape(-1).cpu().numpy()
        last_values = model.policy.predict_values(learner.normalize(batch.last_observations))
    buffer.observations[:] = observations.cpu().numpy().reshape(buffer.observations.shape)
    buffer.actions[:] = batch.actions
    buffer.rewards[:] = rewards
    buffer.episode_starts[:] = batch.episode_starts
    buffer.values[:] = values.reshape(rows, n_envs).cpu().numpy()
    buffer.log_probs[:] = log_probs.reshape(rows, n_envs).cpu().numpy()
    buffer.pos, buffer.full = rows, True
    buffer.compute_returns_and_advantage(last_values, np.asarray(batch.last_dones))
    return buffer


class WeightedSamples(NamedTuple):
    observations: torch.Tensor
    actions: torch.Tensor
    old_values: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    weights: torch.Tensor  # the sample's weight on the policy and value losses
    from_peer: torch.Tensor  # bool: collected by a peer (for the own/peer loss logs)


class WeightedRolloutBuffer(RolloutBuffer):
    """Own and peer samples, flat (one column), each with its loss weight; ``get`` shuffles and
    yields minibatches as SB3's rollout buffer does (one permutation per pass)."""

    weights: np.ndarray
    from_peer: np.ndarray

    @classmethod
    def combine(
        cls, model: OnPolicyAlgorithm, parts: Sequence[RolloutBuffer], weights: Sequence[np.ndarray]
    ) -> "WeightedRolloutBuffer":
        """``parts[0]`` is the learner's own rollout (weights 1), the others its peers'. Each part
        is flattened as SB3 flattens a rollout buffer (env by env)."""
        flat = [{name: RolloutBuffer.swap_and_flatten(getattr(part, name)) for name in _FIELDS} for part in parts]
        size = sum(len(part["rewards"]) for part in flat)
        buffer = cls(size, model.observation_space, model.action_space, model.device, model.gae_lambda, model.gamma, n_envs=1)
        for name in _FIELDS:
            stacked = np.concatenate([part[name] for part in flat])
            getattr(buffer, name)[:] = stacked.reshape(getattr(buffer, name).shape)
        buffer.weights = np.concatenate([np.asarray(w, dtype=np.float32).reshape(-1) for w in weights])
        own = len(flat[0]["rewards"])
        buffer.from_peer = np.arange(size) >= own
        buffer.pos, buffer.full = size, True
        return buffer

    def _get_samples(self, batch_inds: np.ndarray, env: Optional[VecNormalize] = None) -> WeightedSamples:  # type: ignore[override]
        samples = super()._get_samples(batch_inds, env)
        return WeightedSamples(
            *samples,
            self.to_torch(self.weights[batch_inds]),
            torch.as_tensor(self.from_peer[batch_inds], dtype=torch.bool, device=self.device),
        )


_FIELDS = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns")


def importance_ratios(buffer: RolloutBuffer, batch: RolloutBatch) -> np.ndarray:
    """``pi_self(a|s) / pi_collector(a|s)`` per sample, with ``pi_self`` the learner's policy
    before the update (the buffer's ``log_probs``), flattened as the buffer flattens."""
    log_ratio = np.clip(buffer.log_probs - batch.log_probs, -50.0, 50.0)  # exp stays finite
    return RolloutBuffer.swap_and_flatten(np.exp(log_ratio).astype(np.float32)).reshape(-1)


LOG_RATIO_CAP = 20.0  # the largest log pi/pi_before the update's ratio takes (see weighted_update)


def sample_weights(ratios: np.ndarray, weight: float, ratio_clip: float) -> np.ndarray:
    """A peer sample's loss weight: ``weight * min(ratio, ratio_clip)`` (SEAC's lambda times the
    truncated importance ratio)."""
    return (weight * np.minimum(ratios, ratio_clip)).astype(np.float32)


def weighted_update(model: OnPolicyAlgorithm, buffer: WeightedRolloutBuffer) -> int:
    """SB3's PPO update (``PPO.train``) or A2C update (``A2C.train``) on ``buffer``, each sample's
    policy and value loss scaled by its weight; returns the gradient steps taken. With all
    weights 1 it is SB3's update, step for step (``tests/test_rollout_sharing.py``)."""
    is_ppo = isinstance(model, PPO)
    model.policy.set_training_mode(True)
    model._update_learning_rate(model.policy.optimizer)
    clip_range = model.clip_range(model._current_progress_remaining) if is_ppo else None
    clip_range_vf = model.clip_range_vf(model._current_progress_remaining) if is_ppo and model.clip_range_vf else None
    epochs, batch_size = (model.n_epochs, model.batch_size) if is_ppo else (1, None)
    logs: Dict[str, List[float]] = {}
    steps = 0
    for _ in range(epochs):
        stop = False
        for data in buffer.get(batch_size):
            values, log_prob, entropy = model.policy.evaluate_actions(data.observations, data.actions)
            values = values.flatten()
            advantages = data.advantages
            if model.normalize_advantage and len(advantages) > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            # Capped before exp: a peer's action far outside this policy can move its log-probability
            # by hundreds in one step, and exp's overflow times the clipped branch's zero gradient is
            # NaN. exp(20) is far beyond any clip range, so the cap changes no loss that SB3's would.
            log_ratio = torch.clamp(log_prob - data.old_log_prob, max=LOG_RATIO_CAP)
            ratio = torch.exp(log_ratio)
            if clip_range is not None:
                surrogate = torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range))
            else:
                surrogate = advantages * log_prob  # A2C's policy gradient
            values_pred = values
            if clip_range_vf is not None:
                values_pred = data.old_values + torch.clamp(values - data.old_values, -clip_range_vf, clip_range_vf)
            squared_error = (data.returns - values_pred) ** 2
            policy_loss = -(data.weights * surrogate).mean()
            value_loss = (data.weights * squared_error).mean()
            entropy_loss = -torch.mean(entropy) if entropy is not None else -torch.mean(-log_prob)
            loss = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss
            _log_parts(logs, data.from_peer, surrogate, squared_error)
            _append(logs, "train/policy_gradient_loss" if is_ppo else "train/policy_loss", policy_loss.item())
            _append(logs, "train/value_loss", value_loss.item())
            _append(logs, "train/entropy_loss", entropy_loss.item())
            if clip_range is not None:
                with torch.no_grad():
                    approx_kl = torch.mean((ratio - 1) - log_ratio).item()
                _append(logs, "train/approx_kl", approx_kl)
                _append(logs, "train/clip_fraction", torch.mean((torch.abs(ratio - 1) > clip_range).float()).item())
                if model.target_kl is not None and approx_kl > 1.5 * model.target_kl:
                    stop = True
                    break
            model.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)
            model.policy.optimizer.step()
            steps += 1
        model._n_updates += 1
        if stop:
            break
    for key, values_logged in logs.items():
        model.logger.record(key, float(np.mean(values_logged)))
    model.logger.record("train/explained_variance", explained_variance(buffer.values.flatten(), buffer.returns.flatten()))
    model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    if hasattr(model.policy, "log_std"):
        model.logger.record("train/std", torch.exp(model.policy.log_std).mean().item())
    return steps


def _log_parts(
    logs: Dict[str, List[float]], from_peer: torch.Tensor, surrogate: torch.Tensor, squared_error: torch.Tensor
) -> None:
    """The unweighted policy and value losses on own and on peer samples, apart."""
    for part, mask in (("own", ~from_peer), ("peer", from_peer)):
        if mask.any():
            _append(logs, f"share/policy_loss_{part}", -surrogate[mask].mean().item())
            _append(logs, f"share/value_loss_{part}", squared_error[mask].mean().item())


def _append(logs: Dict[str, List[float]], key: str, value: float) -> None:
    logs.setdefault(key, []).append(value)
