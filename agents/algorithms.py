"""The SB3 algorithms a learner can wrap, by the names the command line uses.

``ALGORITHMS`` maps each name to its learner class. The classes register themselves with
``@register_learner`` (``dpd.agents.learner_registry``); this module imports the modules that
define them, so that importing it is enough to see every algorithm.
"""

from dpd.agents import off_policy, on_policy  # noqa: F401  (they register their learners)
from dpd.agents.learner_registry import ALGORITHMS, available_algorithms, register_learner

__all__ = ["ALGORITHMS", "available_algorithms", "register_learner"]
