"""Learners wrapping SB3 algorithms, the DPD peer group, and the loop that trains them."""

from agents.learner import Learner, LearnerSpec
from agents.on_policy import OnPolicyLearner, PPOLearner
from agents.peer_group import PeerGroup
from agents.training import ALGORITHMS, EvalResult, Trainer, evaluate_run, new_run, open_run, resolve_config

__all__ = [
    "ALGORITHMS",
    "EvalResult",
    "Learner",
    "LearnerSpec",
    "OnPolicyLearner",
    "PPOLearner",
    "PeerGroup",
    "Trainer",
    "evaluate_run",
    "new_run",
    "open_run",
    "resolve_config",
]
