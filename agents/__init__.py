"""Learners wrapping SB3 algorithms, the DPD peer group, and the loop that trains them."""

from dpd.agents.algorithms import ALGORITHMS
from dpd.agents.learner import Learner, LearnerSpec
from dpd.agents.off_policy import DDPGLearner, OffPolicyLearner, SACLearner, TD3Learner
from dpd.agents.on_policy import A2CLearner, OnPolicyLearner, PPOLearner
from dpd.agents.peer_group import PeerGroup
from dpd.agents.teacher_student import TeacherStudent, compare_models
from dpd.agents.training import (
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
