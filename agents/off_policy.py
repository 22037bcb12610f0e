"""Learners for SB3's off-policy actor-critics: SAC, TD3 and DDPG.

Values are ``Q(s, mu(s))`` with the deterministic action ``mu(s)``, the minimum over twin
critics where there are two, in raw return units. SAC's critics estimate *soft* values, which
include future entropy bonuses; dpd subtracts an estimate of them so that SAC's values compare
with PPO's and TD3's (see ``SACLearner.normalized_values``).
"""

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from dpd.agents.distillation import CriticAnswer
from dpd.agents.learner import Learner, LearnerSpec
from dpd.agents.learner_registry import register_learner
from dpd.agents.sharing import TransitionBatch, TransitionOutbox, append_rows, check_shareable
from dpd.config import DistillConfig, ShareConfig
from dpd.losses import PolicyOutput

REPLAY_FILE = "replay_buffer.pkl"
# The paper's off-policy setting: lr 1e-4, batch 64, the most recent 1000 transitions, alpha 0.75
# (the released DDPG code). Cadence, ours: every 100 iterations (100 env steps and 100 RL gradient
# steps with SB3's defaults train_freq=1, gradient_steps=1), 10 distillation steps, i.e. one
# distillation step per 10 RL gradient steps.
OFF_POLICY_DISTILL_DEFAULTS = {"alpha": 0.75, "every": 100, "steps": 10, "batch": 64, "lr": 1e-4, "buffer_size": 1000}


class OffPolicyLearner(Learner):
    """Drives ``collect_rollouts``/``train`` the way ``OffPolicyAlgorithm.learn`` does, one
    ``train_freq`` rollout and its gradient steps per call."""

    distill_defaults = OFF_POLICY_DISTILL_DEFAULTS
    off_policy = True
    log_interval = 4  # episodes between SB3 log dumps, as in ``learn()``
    outbox: TransitionOutbox  # own transitions not yet handed to the peers (share=on)

    def __init__(self, spec: LearnerSpec, model: BaseAlgorithm, distill: DistillConfig) -> None:
        super().__init__(spec, model, distill)
        self.outbox = TransitionOutbox()

    @property
    def steps_per_iteration(self) -> int:
        train_freq = self.model.train_freq
        frequency = train_freq.frequency if train_freq.unit.value == "step" else 1  # episodes: unknown length
        return frequency * self.model.n_envs

    def train_iteration(self, run_steps_before: int, update: str = "rl") -> int:
        model = self.model
        assert isinstance(model, OffPolicyAlgorithm) and self._callback is not None
        before = model.num_timesteps
        rollout = model.collect_rollouts(
            model.env,
            train_freq=model.train_freq,
            action_noise=model.action_noise,
            callback=self._callback,
            learning_starts=model.learning_starts,
            replay_buffer=model.replay_buffer,
            log_interval=self.log_interval,
        )
        self.iterations += 1
        taken = model.num_timesteps - before
        self.outbox.record(taken // model.n_envs)
        if not rollout.continue_training:
            self.stopped = True  # a callback stopped it, as it stops ``learn()``
            return taken
        model.logger.record("time/run_total_steps", run_steps_before + taken)
        if model.num_timesteps > model.learning_starts:
            gradient_steps = model.gradient_steps if model.gradient_steps >= 0 else rollout.episode_timesteps
            if gradient_steps > 0:
                self._rl_update(update, lambda: model.train(batch_size=model.batch_size, gradient_steps=gradient_steps))
        return taken

    @property
    def finished_episodes(self) -> int:
        """Training episodes finished since this process built or loaded the model (SB3's own count)."""
        return self.model._episode_num

    def min_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The smallest of the critics' estimates (TD3's and SAC's pessimism; DDPG has one)."""
        return torch.min(torch.cat(self.model.policy.critic(obs, actions), dim=1), dim=1).values

    def actor_parameters(self) -> List[torch.nn.Parameter]:
        return list(self.model.policy.actor.parameters())

    # ----- the critics as a teacher and as a student (guide=distill with guide.critic, PIEKD) ----

    def critic_answer(self, raw_obs: np.ndarray) -> CriticAnswer:
        """Every critic at raw states and at actions this learner's policy samples there (its
        exploration, as PIEKD's recorded actions were), in raw return units."""
        obs = self.normalize(raw_obs)
        with torch.no_grad():
            actions = self.model.policy._predict(obs, deterministic=False)
            q_values = torch.cat(self.model.policy.critic(obs, actions), dim=1)
        return CriticAnswer(actions.cpu().numpy(), self.to_raw_return(q_values.cpu().numpy()))

    def critic_distill_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.policy.critic.parameters(), lr=self.distill_config.lr)

    def sync_critic_target(self) -> None:
        """The target critics become copies of the distilled critics, as PIEKD's code syncs them
        after each distillation (else the TD targets would come from the critics before it)."""
        self.model.critic_target.load_state_dict(self.model.critic.state_dict())

    def distill_critic(self, raw_obs: np.ndarray, target: CriticAnswer, optimizer: torch.optim.Optimizer) -> float:
        """One step of the mean squared error of each critic to the teacher's critic of the same
        index (PIEKD: Q1 to Q1, Q2 to Q2; to the one critic of a DDPG teacher)."""
        obs = self.normalize(raw_obs)
        actions = torch.as_tensor(target.actions, dtype=torch.float32, device=self.device)
        wanted = torch.as_tensor(self.from_raw_return(target.q_values), dtype=torch.float32, device=self.device)
        q_values = self.model.policy.critic(obs, actions)
        loss = sum(
            torch.nn.functional.mse_loss(q.reshape(-1), wanted[:, k % wanted.shape[1]]) for k, q in enumerate(q_values)
        ) / len(q_values)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.policy.critic.parameters(), self.distill_config.max_grad_norm)
        optimizer.step()
        return float(loss.item())

    # ----- shared experience and guidance (share=on, guide=best) ---------------------------------

    def start_sharing(self, config: ShareConfig) -> None:
        """The outbox counts own rows all along; sharing needs a buffer that can take peers' rows."""
        check_shareable(self.model.replay_buffer, self.spec.name)

    def take_transitions(self) -> TransitionBatch:
        """Own transitions since the last hand-over, raw, for the peers' buffers."""
        return self.outbox.take(self.model.replay_buffer)

    def add_transitions(self, batches: Sequence[TransitionBatch]) -> int:
        """Peers' transitions into this learner's replay buffer; returns how many."""
        for batch in batches:
            append_rows(self.model.replay_buffer, batch)
        return sum(batch.transitions for batch in batches)

    @property
    def guided_actor(self) -> torch.nn.Module:
        return self.model.policy.actor

    @property
    def guided_optimizer(self) -> torch.optim.Optimizer:
        return self.model.policy.actor.optimizer

    def guidance_states(self, count: int) -> Optional[np.ndarray]:
        """Raw states from the replay buffer (the whole group's, with sharing)."""
        buffer = self.model.replay_buffer
        upper = buffer.buffer_size if buffer.full else buffer.pos
        if upper == 0:
            return None
        rows = np.random.randint(0, upper, size=count)
        columns = np.random.randint(0, buffer.n_envs, size=count)
        return buffer.observations[rows, columns].astype(np.float32)

    def guidance_advantage(self, obs: torch.Tensor, leader_actions: torch.Tensor, own_actions: torch.Tensor) -> float:
        """The leader's advantage by this learner's critic, ``Q(s, pi_leader(s)) - Q(s, pi(s))``, raw units."""
        advantage = self.min_q(obs, leader_actions) - self.min_q(obs, own_actions)
        return float(self.to_raw_return(advantage.mean().cpu().numpy().reshape(1))[0])

    def _save_extra(self, directory: Path) -> None:
        if self.spec.save_replay_buffer:
            self.model.save_replay_buffer(directory / REPLAY_FILE)

    def _load_extra(self, directory: Path) -> None:
        if (directory / REPLAY_FILE).is_file():
            self.model.load_replay_buffer(directory / REPLAY_FILE)
        else:
            # An empty buffer: collect ``learning_starts`` fresh steps before training again.
            self.model.learning_starts = self.model.num_timesteps + self.model.learning_starts


@register_learner("sac")
class SACLearner(OffPolicyLearner):
    algo_class = SAC
    distribution_kind = "squashed_gaussian"

    def action_distribution(self, obs: torch.Tensor) -> PolicyOutput:
        mean, log_std, _ = self.model.policy.actor.get_action_dist_params(obs)
        return PolicyOutput(mean, log_std, self.unscale_action(torch.tanh(mean)))

    def express_target(self, target: PolicyOutput, target_kind: str) -> PolicyOutput:
        if target_kind == self.distribution_kind:
            return target
        # A peer's env-space action, taken back through the squashing: its pre-tanh value.
        scaled = torch.clamp(self.scale_action(target.env_action), -1.0 + 1e-6, 1.0 - 1e-6)
        return PolicyOutput(torch.atanh(scaled), None, target.env_action)

    def normalized_values(self, obs: torch.Tensor) -> torch.Tensor:
        """``min Q_soft(s, mu(s)) - ent_coef * gamma / (1 - gamma) * H(s)``.

        A soft Q adds ``ent_coef * H`` at every future step; taking the policy's entropy at ``s``
        (one-sample estimate ``-log pi(a|s)``) as that of future states gives the correction.
        """
        actor = self.model.policy.actor
        mean, log_std, kwargs = actor.get_action_dist_params(obs)
        q_soft = self.min_q(obs, torch.tanh(mean))
        _, log_prob = actor.action_dist.log_prob_from_params(mean, log_std, **kwargs)  # one actor pass for both
        model = self.model
        ent_coef = torch.exp(model.log_ent_coef.detach()) if model.log_ent_coef is not None else model.ent_coef_tensor
        return q_soft + ent_coef * self.gamma / (1.0 - self.gamma) * log_prob.reshape(-1)


@register_learner("td3")
class TD3Learner(OffPolicyLearner):
    algo_class = TD3
    distribution_kind = "deterministic"

    def action_distribution(self, obs: torch.Tensor) -> PolicyOutput:
        scaled = self.model.policy.actor(obs)
        return PolicyOutput(scaled, None, self.unscale_action(scaled))

    def normalized_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.min_q(obs, self.model.policy.actor(obs))


@register_learner("ddpg")
class DDPGLearner(TD3Learner):
    algo_class = DDPG
