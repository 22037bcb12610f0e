"""The registry of learner classes, by the algorithm names the command line uses.

A learner class registers itself with ``@register_learner("ppo")``. The registry is a module of
its own, importing no learner module, so that the learner modules (``on_policy``,
``off_policy``) can import it without an import cycle; ``dpd.agents.algorithms`` imports them,
so importing that (or anything in ``dpd.agents``) fills the registry.
"""

from typing import Callable, List, Type, TypeVar

from dpd.agents.learner import Learner
from dpd.registry import Registry

LearnerClass = TypeVar("LearnerClass", bound=Type[Learner])

ALGORITHMS: Registry[Type[Learner]] = Registry("algorithm")  # name -> learner class


def register_learner(name: str) -> Callable[[LearnerClass], LearnerClass]:
    """Class decorator: the learner for algorithm ``name`` (``--algo name``)."""
    return ALGORITHMS.register(name)


def available_algorithms() -> List[str]:
    """The registered algorithm names, sorted."""
    return ALGORITHMS.names()
