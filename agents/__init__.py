"""Learners wrapping SB3 algorithms, the DPD peer group, and the loop that trains them."""

# Importing the package registers every backend (and, through algorithms, every learner).
from dpd.agents import local_backend, process_backend, ray_backend  # noqa: F401
from dpd.agents.algorithms import ALGORITHMS, available_algorithms, register_learner
from dpd.agents.assembly import build_group, build_learner, build_learners
from dpd.agents.backend import PeerBackend, available_backends, make_backend, register_backend
from dpd.agents.checks import check_config
from dpd.agents.comparison import compare_models
from dpd.agents.learner import Learner, LearnerSpec
from dpd.agents.off_policy import DDPGLearner, OffPolicyLearner, SACLearner, TD3Learner
from dpd.agents.on_policy import A2CLearner, OnPolicyLearner, PPOLearner
from dpd.agents.peer import PeerFailure
from dpd.agents.peer_group import PeerGroup
from dpd.agents.peer_setup import PeerSetup, peer_setups
from dpd.agents.runs import evaluate_run, new_run, open_run
from dpd.agents.teacher_student import TeacherStudent
from dpd.agents.trainer import EvalResult, TrainableAgent, Trainer

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
    "PeerBackend",
    "PeerFailure",
    "PeerGroup",
    "TrainableAgent",
    "Trainer",
    "available_algorithms",
    "available_backends",
    "make_backend",
    "register_backend",
    "register_learner",
    "evaluate_run",
    "new_run",
    "open_run",
]
