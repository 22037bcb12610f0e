"""The registry of learner classes, by the algorithm names the command line uses.

A learner class registers itself with ``@register_learner("ppo")``. The registry is a module of
its own, importing no learner module, so that the learner modules (``on_policy``,
``off_policy``) can import it without an import cycle; ``dpd.agents.algorithms`` imports them,
so importing that (or anything in ``dpd.agents``) fills the registry.
"""

from types import MappingProxyType
from typing import Callable, Dict, List, Mapping, Type, TypeVar

from dpd.agents.learner import Learner

LearnerClass = TypeVar("LearnerClass", bound=Type[Learner])

_REGISTRY: Dict[str, Type[Learner]] = {}
ALGORITHMS: Mapping[str, Type[Learner]] = MappingProxyType(_REGISTRY)  # name -> learner class, read-only


def register_learner(name: str) -> Callable[[LearnerClass], LearnerClass]:
    """Class decorator: the learner for algorithm ``name`` (``--algo name``)."""

    def decorator(cls: LearnerClass) -> LearnerClass:
        if name in _REGISTRY:
            raise ValueError(f"algorithm {name!r} is already registered (by {_REGISTRY[name].__name__})")
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_algorithms() -> List[str]:
    """The registered algorithm names, sorted."""
    return sorted(_REGISTRY)
