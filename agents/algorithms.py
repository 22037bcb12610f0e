"""The SB3 algorithms a learner can wrap, by the names the command line uses."""

from typing import Dict, Type

from dpd.agents.learner import Learner
from dpd.agents.off_policy import DDPGLearner, SACLearner, TD3Learner
from dpd.agents.on_policy import A2CLearner, PPOLearner

ALGORITHMS: Dict[str, Type[Learner]] = {
    "ppo": PPOLearner,
    "a2c": A2CLearner,
    "sac": SACLearner,
    "td3": TD3Learner,
    "ddpg": DDPGLearner,
}
