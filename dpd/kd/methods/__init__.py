"""The supervised distillation methods, each registered by name for ``dpd kd --method``."""

from dpd.kd.methods.base import METHODS, DistillContext, Distilled, KDMethod, KDOptions, get_method, kd_method, method_names

# Import the modules that register methods, in the order they are listed.
# isort: off
from dpd.kd.methods import logits, features, rkd, reaugkd, disk, cooperative  # noqa: F401
# isort: on

__all__ = ["METHODS", "DistillContext", "Distilled", "KDMethod", "KDOptions", "get_method", "kd_method", "method_names"]
