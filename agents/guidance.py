"""Guidance by the best peer (P3S; Jung, Park, Sung, ICLR 2020).

Every ``guide.every`` env steps of its own, the group names a leader: the peer with the highest
mean raw return over its last ``guide.episodes`` training episodes. Each other peer then receives
a frozen copy of the leader's actor with the leader's observation statistics (a ``Guide``) and
adds ``beta / 2 * ||pi(s) - pi_leader(s)||^2`` to its actor loss, actions in SB3's [-1, 1] units
(for SAC the deterministic action ``tanh(mean)``). ``beta`` adapts so that the mean distance to
the leader stays near a search range, P3S's rule (``adapt_beta``), the range widened as the
released code does: to twice the distance the peer's own policy moved since the last election
(``search_range``; the paper widens it by the leader's advantage instead, ``guide.rho``).

What P3S's released code (TD3, TensorFlow) does that the paper leaves open: each of N learners
takes one gradient update per env step of the whole group, i.e. N times one TD3's updates at the
same total env steps (``share.updates=per_peer`` here); the leader is re-chosen about every 2000
env steps; beta starts at 1, stays within [1e-3, 1e3], and the range is
``max(2 * D_own, 0.04)`` with ``D_own`` the distance a learner's policy moved in the last epoch.

Where dpd differs from the paper, and why:
- The term's gradient is added at the actor optimizer's step (``GuidanceHook``) on a minibatch of
  its own, sampled from the same replay buffer, instead of on the RL minibatch: SB3's ``train``
  is left untouched, and the expected gradient is the same.
- Each peer adapts its own ``beta`` from its own distance, and estimates the leader's advantage
  with its own critic (``Q(s, pi_leader(s)) - Q(s, pi(s))``); the paper uses one ``beta`` and the
  leader's critic. With two peers only one peer is guided at a time, so one ``beta`` each is the
  paper's rule applied to the peer it concerns.
"""

import copy
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd


def choose_leader(recent_returns: Sequence[float]) -> Optional[int]:
    """The index of the highest recent return; the lowest index wins a tie; ``None`` while no
    peer has finished an episode (NaN)."""
    best: Optional[int] = None
    for index, value in enumerate(recent_returns):
        if not math.isnan(value) and (best is None or value > recent_returns[best]):
            best = index
    return best


BETA_BOUNDS = (1e-3, 1e3)  # P3S's released code keeps beta within these


def search_range(
    target: float, advantage: float = math.nan, rho: float = 0.0, drift: float = math.nan, drift_ratio: float = 0.0
) -> float:
    """The distance to the leader that ``beta`` steers towards: at least ``target``, widened to
    ``rho`` times the leader's advantage (the paper's rule) or to ``drift_ratio`` times the
    distance the peer's own policy moved since the last election (the released code's rule,
    ``target_ratio * D_old``). NaN (nothing measured) widens nothing."""
    widths = [target]
    if not math.isnan(advantage):
        widths.append(rho * advantage)
    if not math.isnan(drift):
        widths.append(drift_ratio * drift)
    return max(widths)


def adapt_beta(beta: float, distance: float, search: float, rate: float = 2.0) -> float:
    """P3S's rule: ``beta`` grows by ``rate`` when the mean distance to the leader exceeds 1.5
    times the search range (pull harder) and shrinks by ``rate`` below 1/1.5 of it (let the peer
    search), within ``BETA_BOUNDS``. NaN (no guided step yet) keeps ``beta``."""
    if math.isnan(distance):
        return beta
    low, high = BETA_BOUNDS
    if distance > 1.5 * search and beta * rate <= high:
        return beta * rate
    if distance < search / 1.5 and beta / rate >= low:
        return beta / rate
    return beta


@dataclass
class Guide:
    """The leader's actor, frozen, with the observation statistics it was trained on."""

    leader: int
    actor: torch.nn.Module
    obs_rms: Optional[RunningMeanStd]
    clip_obs: float
    epsilon: float

    def normalize(self, raw_obs: np.ndarray) -> torch.Tensor:
        obs = raw_obs
        if self.obs_rms is not None:
            obs = np.clip(
                (raw_obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon), -self.clip_obs, self.clip_obs
            )
        return torch.as_tensor(obs, dtype=torch.float32)

    def actions(self, raw_obs: np.ndarray) -> torch.Tensor:
        """The leader's deterministic actions in [-1, 1] units."""
        with torch.no_grad():
            return deterministic_actor_action(self.actor, self.normalize(raw_obs))


def deterministic_actor_action(actor: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """SAC's ``tanh(mean)``, TD3/DDPG's ``mu(s)`` or PPO/A2C's Gaussian mean, in [-1, 1] units
    (the mean scaled as SB3 scales bounded actions, not clipped), with gradients."""
    if isinstance(actor, ActorCriticPolicy):
        mean = actor.get_distribution(obs).distribution.mean
        space = actor.action_space
        low, high = (torch.as_tensor(bound, dtype=mean.dtype, device=mean.device) for bound in (space.low, space.high))
        return 2.0 * (mean - low) / (high - low) - 1.0
    try:
        return actor(obs, deterministic=True)  # SAC's Actor
    except TypeError:
        return actor(obs)  # TD3's Actor


def make_guide(leader: int, actor: torch.nn.Module, env: object) -> Guide:
    """A detached copy of ``actor`` and the statistics of its VecNormalize ``env``."""
    # A fresh actor with the same weights: a deep copy would drag along SB3's cached distribution
    # (tensors of the last forward pass) and the actor's optimizer.
    frozen = type(actor)(**actor._get_constructor_parameters())
    frozen.load_state_dict(actor.state_dict())
    frozen.eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    norm_obs = getattr(env, "norm_obs", False)
    obs_rms = copy.deepcopy(env.obs_rms) if norm_obs else None  # type: ignore[attr-defined]
    return Guide(leader, frozen, obs_rms, float(getattr(env, "clip_obs", 10.0)), float(getattr(env, "epsilon", 1e-8)))


class GuidanceHook:
    """Adds ``beta / 2 * ||pi(s) - pi_leader(s)||^2`` to the actor's gradient just before each
    actor optimizer step, on ``batch_size`` raw states the learner draws (``guidance_states``: an
    off-policy learner's replay buffer, an on-policy learner's recent states). Records the
    distances and advantages it saw for ``adapt_beta`` and TensorBoard."""

    def __init__(self, learner: object, batch_size: int, beta: float) -> None:
        self.learner = learner
        self.batch_size = batch_size
        self.beta = beta
        self.guide: Optional[Guide] = None
        self.previous: Optional[Guide] = None  # this peer's own actor at the last election
        self._distances: List[float] = []
        self._advantages: List[float] = []
        self._drifts: List[float] = []

    def __call__(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        if self.guide is None or self.beta == 0.0:
            return
        learner = self.learner
        raw = learner.guidance_states(self.batch_size)  # type: ignore[attr-defined]
        if raw is None:
            return
        obs = learner.normalize(raw)  # type: ignore[attr-defined]
        own = deterministic_actor_action(learner.guided_actor, obs)  # type: ignore[attr-defined]
        target = self.guide.actions(raw).to(own.device)  # the guide lives on the CPU (it travels between peers)
        distance = 0.5 * ((own - target) ** 2).sum(dim=1)
        (self.beta * distance.mean()).backward()
        with torch.no_grad():
            self._advantages.append(learner.guidance_advantage(obs, target, own))  # type: ignore[attr-defined]
            if self.previous is not None:
                drift = 0.5 * ((own - self.previous.actions(raw).to(own.device)) ** 2).sum(dim=1)
                self._drifts.append(float(drift.mean()))
        self._distances.append(float(distance.mean().detach()))

    @property
    def seen(self) -> Tuple[List[float], List[float], List[float]]:
        """The distances, advantages and drifts seen since the last election, which ``take_stats``
        averages at the next: a checkpoint between elections keeps them."""
        return self._distances, self._advantages, self._drifts

    @seen.setter
    def seen(self, lists: Tuple[List[float], List[float], List[float]]) -> None:
        self._distances, self._advantages, self._drifts = (list(values) for values in lists)

    def take_stats(self) -> Dict[str, float]:
        """Mean distance to the leader, the leader's advantage and the own policy's drift since
        the last call (NaN if none), then reset."""
        stats = {
            name: float(np.mean(values)) if values else float("nan")
            for name, values in (("distance", self._distances), ("advantage", self._advantages), ("drift", self._drifts))
        }
        self._distances, self._advantages, self._drifts = [], [], []
        return stats
