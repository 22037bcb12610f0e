"""Learners wrapping SB3 algorithms, the DPD peer group, and the loop that trains them."""

from agents.algorithms import ALGORITHMS
from agents.learner import Learner, LearnerSpec
from agents.off_policy import DDPGLearner, OffPolicyLearner, SACLearner, TD3Learner
from agents.on_policy import A2CLearner, OnPolicyLearner, PPOLearner
from agents.peer_group import PeerGroup
from agents.teacher_student import TeacherStudent, compare_models
from agents.training import (
    EvalResult,
    PeerSetup,
    Trainer,
    build_group,
    build_learner,
    build_learners,
    check_config,
    evaluate_run,
    new_run,
    open_run,
    peer_setups,
)

__all__ = [
    "A2CLearner",
    "ALGORITHMS",
    "DDPGLearner",
    "OffPolicyLearner",
    "PeerSetup",
    "SACLearner",
    "TD3Learner",
    "TeacherStudent",
    "build_group",
    "compare_models",
    "build_learner",
    "build_learners",
    "check_config",
    "peer_setups",
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
]
