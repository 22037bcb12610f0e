"""Learners for SB3's on-policy actor-critics (PPO now; A2C shares the same policy class)."""

import math
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from dpd.agents.learner import Learner, LearnerSpec
from dpd.agents.learner_registry import register_learner
from dpd.agents.rollout_sharing import (
    RolloutBatch,
    RolloutRecorder,
    WeightedRolloutBuffer,
    importance_ratios,
    peer_rollout_buffer,
    sample_weights,
    weighted_update,
)
from dpd.config import DistillConfig, ShareConfig
from dpd.losses import PolicyOutput

PEER_ROLLOUTS_FILE = "peer_rollouts.npz"  # peers' rollouts received but not yet learned from


class OnPolicyLearner(Learner):
    """Drives ``collect_rollouts``/``train`` the way ``OnPolicyAlgorithm.learn`` does, one
    iteration per call, so learning-rate and clip-range schedules run once over the budget."""

    distribution_kind = "gaussian"
    sharing: Optional[ShareConfig] = None  # set by ``start_sharing`` (share=on)

    def __init__(self, spec: LearnerSpec, model: BaseAlgorithm, distill: DistillConfig) -> None:
        super().__init__(spec, model, distill)
        self.recorder = RolloutRecorder(self.env)
        self.inbox: List[RolloutBatch] = []  # peers' rollouts for the next update

    @property
    def policy(self) -> ActorCriticPolicy:
        return self.model.policy

    def _extra_callbacks(self) -> List[BaseCallback]:
        return [self.recorder]

    @property
    def steps_per_iteration(self) -> int:
        return self.model.n_steps * self.model.n_envs

    def train_iteration(self, run_steps_before: int, update: str = "rl") -> int:
        model = self.model
        assert isinstance(model, OnPolicyAlgorithm) and self._callback is not None
        before = model.num_timesteps
        if not model.collect_rollouts(model.env, self._callback, model.rollout_buffer, n_rollout_steps=model.n_steps):
            self.stopped = True  # a callback stopped it mid-rollout: no update on a partial buffer
            return model.num_timesteps - before
        self.iterations += 1
        model._update_current_progress_remaining(model.num_timesteps, model._total_timesteps)
        taken = model.num_timesteps - before
        model.logger.record("time/run_total_steps", run_steps_before + taken)
        model.dump_logs(self.iterations)
        if self.inbox:
            peers, self.inbox = self.inbox, []  # each peer rollout is learned from once
            self._rl_update(update, lambda: self._train_shared(peers))
        else:
            self._rl_update(update, model.train)
        return taken

    # ----- gradient updates: SB3's on the own rollout, or the shared update -----------------

    @property
    def gradient_updates(self) -> int:
        """Optimizer steps of the RL update so far. SB3's ``_n_updates`` counts PPO's epochs (A2C's
        updates), each of ``own_minibatches`` steps on the own rollout; a shared update's extra
        minibatches on peers' samples are counted apart, so a model trained by SB3's own
        ``learn()`` is counted the same way."""
        return int(self.model._n_updates) * self.own_minibatches + int(getattr(self.model, "dpd_peer_gradient_steps", 0))

    @property
    def own_minibatches(self) -> int:
        """Optimizer steps of one epoch on the own rollout: PPO's minibatches, A2C's one."""
        model = self.model
        return math.ceil(model.n_steps * model.n_envs / model.batch_size) if isinstance(model, PPO) else 1

    def _train_shared(self, peers: Sequence[RolloutBatch]) -> None:
        """The update on the own rollout and the peers' (SEAC; ``dpd.agents.rollout_sharing``)."""
        sharing = self.sharing
        assert sharing is not None
        parts = [self.model.rollout_buffer]
        weights = [np.ones(self.model.rollout_buffer.rewards.size, dtype=np.float32)]
        ratios = []
        for batch in peers:
            buffer = peer_rollout_buffer(self, batch)
            parts.append(buffer)
            ratios.append(importance_ratios(buffer, batch))
            weights.append(sample_weights(ratios[-1], sharing.weight, sharing.ratio_clip))
        ratio = np.concatenate(ratios)
        logger = self.model.logger
        logger.record("share/peer_samples", int(ratio.size))
        logger.record("share/ratio_mean", float(np.mean(np.minimum(ratio, sharing.ratio_clip))))
        logger.record("share/ratio_clipped_frac", float(np.mean(ratio > sharing.ratio_clip)))
        combined = WeightedRolloutBuffer.combine(self.model, parts, weights)
        epochs_before = self.model._n_updates
        steps = weighted_update(self.model, combined)
        # What the epochs' own-rollout minibatches do not account for; an attribute of the model,
        # so that the SB3 zip saves and restores it.
        extra = steps - (self.model._n_updates - epochs_before) * self.own_minibatches
        self.model.dpd_peer_gradient_steps = int(getattr(self.model, "dpd_peer_gradient_steps", 0)) + extra

    # ----- shared experience (share=on) -----------------------------------------------------

    def start_sharing(self, config: ShareConfig) -> None:
        self.sharing = config
        self.recorder.recording = True

    def take_transitions(self) -> RolloutBatch:
        return self.recorder.take()

    def add_transitions(self, batches: Sequence[RolloutBatch]) -> int:
        self.inbox.extend(batch for batch in batches if len(batch))
        return sum(batch.transitions for batch in batches)

    def _save_extra(self, directory: Path) -> None:
        if self.inbox:
            arrays = {f"{k}_{name}": value for k, batch in enumerate(self.inbox) for name, value in batch.arrays().items()}
            np.savez(directory / PEER_ROLLOUTS_FILE, count=len(self.inbox), **arrays)

    def _load_extra(self, directory: Path) -> None:
        path = directory / PEER_ROLLOUTS_FILE
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                names = RolloutBatch.__dataclass_fields__
                self.inbox = [RolloutBatch(**{name: data[f"{k}_{name}"] for name in names}) for k in range(int(data["count"]))]

    def action_distribution(self, obs: torch.Tensor) -> PolicyOutput:
        # The pieces of ActorCriticPolicy.get_distribution, without its shared distribution object.
        features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
        mean = self.policy.action_net(self.policy.mlp_extractor.forward_actor(features))
        return PolicyOutput(mean, self.policy.log_std.expand_as(mean))

    def normalized_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.predict_values(obs).reshape(-1)

    @property
    def guided_actor(self) -> torch.nn.Module:
        return self.policy

    @property
    def guided_optimizer(self) -> torch.optim.Optimizer:
        return self.policy.optimizer

    def actor_parameters(self) -> List[torch.nn.Parameter]:
        modules = [self.policy.pi_features_extractor, self.policy.mlp_extractor.policy_net, self.policy.action_net]
        params = [p for module in modules for p in module.parameters()]
        return params + [self.policy.log_std]


@register_learner("ppo")
class PPOLearner(OnPolicyLearner):
    algo_class = PPO
    # The paper's released PPO code: every 5 iterations (of 2048 steps) one step on 512 states
    # from the peer's last 100k, alpha 0.5, at the RL learning rate (SB3's PPO default: 3e-4).
    distill_defaults = {"alpha": 0.5, "every": 5, "steps": 1, "batch": 512, "lr": 3e-4, "buffer_size": 100_000}


@register_learner("a2c")
class A2CLearner(OnPolicyLearner):
    algo_class = A2C
    # PPO's cadence in env steps: A2C iterations are 5 steps, so every 2048 iterations is every
    # 10240 steps, as PPO's 5 x 2048; the RL learning rate of SB3's A2C (7e-4).
    distill_defaults = {"alpha": 0.5, "every": 2048, "steps": 1, "batch": 512, "lr": 7e-4, "buffer_size": 100_000}
