"""PPO's update with a distillation term: proximal policy distillation, and kickstarting a PPO student.

The student learns by PPO on its own rollouts and, in the same gradient step, towards its
teacher on the same minibatch. Two weightings of the term:

- ``ratio``: PPD (Spigler, "Proximal Policy Distillation", TMLR 2025),
  ``loss = L_PPO + lambda * mean(max(ratio, 1 - eps) * KL(teacher || student))`` with
  ``ratio = pi(a|s) / pi_old(a|s)`` and ``eps`` PPO's clip range. The ratio weights the
  distillation term as PPO's surrogate weights the advantage, and its floor at ``1 - eps`` keeps a
  state from dropping out of distillation once the policy moves away from the rollout's action;
- ``none``: kickstarting (Schmitt et al., "Kickstarting Deep Reinforcement Learning", 2018),
  ``loss = L_RL + lambda_k * mean(KL(teacher || student))``, one summed loss through the RL
  optimizer, with ``lambda_k`` annealed by the caller. Summing matters: the distillation pull is
  then weighed against PPO's own gradient at PPO's learning rate, so a small ``lambda_k`` frees
  the student to improve on its teacher.

The update below is SB3's ``PPO.train`` (stable-baselines3 2.x), step for step, with the term
added: same minibatches (``RolloutBuffer.get``'s permutation of NumPy's global generator), same
advantage normalisation, value clipping, entropy term, early stop on ``target_kl`` and gradient
clipping, so that ``lambda = 0`` is PPO exactly (tests/test_teacher_student.py). Changed from the
paper: for a teacher whose distribution is not a Gaussian of the student's kind (SAC, TD3 and
DDPG teachers of a PPO student), KL is replaced by the student's ``distill.loss`` (MSE on actions
in env units), as in every other mode.
"""

from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import PPO
from stable_baselines3.common.utils import explained_variance

from dpd.agents.learner import Learner
from dpd.losses import PolicyOutput

# The tensors ``RolloutBuffer.get`` flattens from (steps, envs, ...) to (steps * envs, ...) on first use.
ROLLOUT_FIELDS = ("observations", "actions", "values", "log_probs", "advantages", "returns")


def flat_order(raw: np.ndarray) -> np.ndarray:
    """Raw observations recorded as (steps, envs, dim) in the rollout buffer's flat order, env by env."""
    return raw.swapaxes(0, 1).reshape(-1, raw.shape[-1])


# How the distillation term weights each state: PPD's ``max(ratio, 1 - eps)``, or kickstarting's 1.
TERM_WEIGHTINGS = ("ratio", "none")


def ppd_update(student: Learner, target: PolicyOutput, lam: float, weighting: str = "ratio") -> Dict[str, float]:
    """One PPO update of ``student`` on its full rollout buffer with ``lam`` times the distillation
    term (``weighting``: ``ratio`` for PPD, ``none`` for kickstarting) added to its loss.

    ``target``: the teacher's output on each row of the buffer, in its flat order (``flat_order``),
    expressed in the student's distribution space. Returns the mean distillation term and the
    mean weight, logged under ``distill/``."""
    assert weighting in TERM_WEIGHTINGS, weighting
    model = student.model
    assert isinstance(model, PPO), "PPD distils into a PPO student"
    policy, buffer = model.policy, model.rollout_buffer
    policy.set_training_mode(True)
    model._update_learning_rate(policy.optimizer)
    clip_range = model.clip_range(model._current_progress_remaining)  # type: ignore[operator]
    clip_range_vf = model.clip_range_vf(model._current_progress_remaining) if model.clip_range_vf is not None else None  # type: ignore[operator]
    rows = buffer.buffer_size * buffer.n_envs
    entropy_losses: List[float] = []
    pg_losses: List[float] = []
    value_losses: List[float] = []
    clip_fractions: List[float] = []
    distill_terms: List[float] = []
    weights: List[float] = []
    approx_kl_divs: List[float] = []
    continue_training = True
    loss = torch.zeros(())
    for _ in range(model.n_epochs):
        approx_kl_divs = []
        indices = np.random.permutation(rows)  # as RolloutBuffer.get draws it
        if not buffer.generator_ready:
            for name in ROLLOUT_FIELDS:
                buffer.__dict__[name] = buffer.swap_and_flatten(buffer.__dict__[name])
            buffer.generator_ready = True
        for start in range(0, rows, model.batch_size):
            batch = indices[start : start + model.batch_size]
            data = buffer._get_samples(batch)
            values, log_prob, entropy = policy.evaluate_actions(data.observations, data.actions)
            values = values.flatten()
            advantages = data.advantages
            if model.normalize_advantage and len(advantages) > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            ratio = torch.exp(log_prob - data.old_log_prob)
            policy_loss = -torch.min(
                advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
            ).mean()
            pg_losses.append(policy_loss.item())
            clip_fractions.append(torch.mean((torch.abs(ratio - 1) > clip_range).float()).item())
            if clip_range_vf is None:
                values_pred = values
            else:
                values_pred = data.old_values + torch.clamp(values - data.old_values, -clip_range_vf, clip_range_vf)
            value_loss = F.mse_loss(data.returns, values_pred)
            value_losses.append(value_loss.item())
            entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
            entropy_losses.append(entropy_loss.item())

            # The term: the teacher's divergence from the student on this minibatch, per state weighted.
            rows_target = PolicyOutput(*(None if t is None else t[torch.as_tensor(batch)] for t in target))
            divergence = student.distill_loss.per_sample(student.action_distribution(data.observations), rows_target)
            weight = torch.clamp(ratio, min=1 - clip_range) if weighting == "ratio" else torch.ones_like(ratio)
            distill_term = (weight * divergence).mean()
            distill_terms.append(distill_term.item())
            weights.append(weight.mean().item())

            loss = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss + lam * distill_term
            with torch.no_grad():
                log_ratio = log_prob - data.old_log_prob
                approx_kl_div = torch.mean((torch.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                approx_kl_divs.append(float(approx_kl_div))
            if model.target_kl is not None and approx_kl_div > 1.5 * model.target_kl:
                continue_training = False
                break
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
            policy.optimizer.step()
        model._n_updates += 1
        if not continue_training:
            break
    logger = model.logger
    logger.record("train/entropy_loss", np.mean(entropy_losses))
    logger.record("train/policy_gradient_loss", np.mean(pg_losses))
    logger.record("train/value_loss", np.mean(value_losses))
    logger.record("train/approx_kl", np.mean(approx_kl_divs))
    logger.record("train/clip_fraction", np.mean(clip_fractions))
    logger.record("train/loss", loss.item())
    logger.record("train/explained_variance", explained_variance(buffer.values.flatten(), buffer.returns.flatten()))
    logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    logger.record("train/clip_range", clip_range)
    return {"loss": float(np.mean(distill_terms)), "term_weight": float(np.mean(weights))}
