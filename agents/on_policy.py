"""Learners for SB3's on-policy actor-critics (PPO now; A2C shares the same policy class)."""

from typing import List

import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from dpd.agents.learner import Learner
from dpd.agents.learner_registry import register_learner
from dpd.losses import PolicyOutput


class OnPolicyLearner(Learner):
    """Drives ``collect_rollouts``/``train`` the way ``OnPolicyAlgorithm.learn`` does, one
    iteration per call, so learning-rate and clip-range schedules run once over the budget."""

    distribution_kind = "gaussian"

    @property
    def policy(self) -> ActorCriticPolicy:
        return self.model.policy

    @property
    def steps_per_iteration(self) -> int:
        return self.model.n_steps * self.model.n_envs

    def train_iteration(self, run_steps_before: int, update: str = "rl") -> int:
        model = self.model
        assert isinstance(model, OnPolicyAlgorithm) and self._callback is not None
        before = model.num_timesteps
        model.collect_rollouts(model.env, self._callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
        self.iterations += 1
        model._update_current_progress_remaining(model.num_timesteps, model._total_timesteps)
        taken = model.num_timesteps - before
        model.logger.record("time/run_total_steps", run_steps_before + taken)
        model.dump_logs(self.iterations)
        self._rl_update(update, model.train)
        return taken

    def action_distribution(self, obs: torch.Tensor) -> PolicyOutput:
        # The pieces of ActorCriticPolicy.get_distribution, without its shared distribution object.
        features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
        mean = self.policy.action_net(self.policy.mlp_extractor.forward_actor(features))
        return PolicyOutput(mean, self.policy.log_std.expand_as(mean))

    def normalized_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.predict_values(obs).reshape(-1)

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
