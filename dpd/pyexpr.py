"""The small Python expressions of RL-zoo hyperparameter files, read without ``eval``.

The zoo writes ``policy_kwargs`` (and ``normalize``, ``env_kwargs``) as Python source, e.g.
``"dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256], vf=[256]))"``,
and runs it with ``eval``. A config file must not run code (README, "Security"), so this module
reads such strings with Python's ``ast`` into plain values: numbers, strings, booleans, None,
lists (tuples become lists, which YAML and JSON keep), dicts and ``dict(key=value, ...)`` calls.
The one name it knows is an activation class of ``torch.nn`` as the value of ``activation_fn``,
from a fixed allow-list; it stays a string (``"nn.ReLU"``) in the config, so that the run's
manifest and ``config.yaml`` remain plain data, and becomes the class only when the learner is
built (``activation_class``). Anything else is a one-line user error.
"""

import ast
from typing import Any, Dict, Type

from dpd.errors import UserError

# Activation classes of torch.nn a policy may name: the ones SB3 users and the zoo's files use.
ACTIVATIONS = (
    "CELU",
    "ELU",
    "GELU",
    "Hardswish",
    "Hardtanh",
    "Identity",
    "LeakyReLU",
    "Mish",
    "PReLU",
    "ReLU",
    "ReLU6",
    "SELU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Softsign",
    "Tanh",
)
# How a zoo file spells the module of an activation: ``nn.ReLU``, ``th.nn.ReLU``, ``torch.nn.ReLU``.
MODULE_PREFIXES = ("nn.", "th.nn.", "torch.nn.")
ACTIVATION_KEY = "activation_fn"  # the one key whose value may be a name
MAX_LENGTH = 10_000  # far beyond any zoo entry; the parser's recursion stays shallow


def activation_name(text: str) -> str:
    """The canonical spelling (``nn.ReLU``) of an allowed activation, from any of the zoo's."""
    name = text
    for prefix in sorted(MODULE_PREFIXES, key=len, reverse=True):
        if text.startswith(prefix):
            name = text[len(prefix) :]
            break
    if name not in ACTIVATIONS:
        allowed = ", ".join(f"nn.{item}" for item in ACTIVATIONS)
        raise UserError(f"unknown activation_fn {text!r}; valid choices: {allowed}")
    return f"nn.{name}"


def activation_class(text: str) -> Type[Any]:
    """The ``torch.nn`` class an activation name stands for (imports torch: only when a learner is built)."""
    import torch

    return getattr(torch.nn, activation_name(text)[len("nn.") :])


def _dotted(node: ast.expr) -> str:
    """``a.b.c`` from an attribute chain of plain names; empty if it is anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(node.id)
    return ".".join(reversed(parts))


class _Reader:
    """Walks the expression tree of one string; ``where`` names it in errors (``Hopper-v4.policy_kwargs``)."""

    def __init__(self, where: str, text: str) -> None:
        self.where = where
        self.text = text

    def refuse(self, node: ast.AST) -> UserError:
        snippet = ast.get_source_segment(self.text, node) or type(node).__name__
        return UserError(
            f"{self.where}: cannot read {snippet!r} without running code; allowed are numbers, strings, True/False/None, "
            "lists, dicts, dict(key=value, ...) and activation_fn=nn.<Activation>"
        )

    def value(self, node: ast.expr, key: str = "") -> Any:
        if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand)
            if isinstance(operand, bool) or not isinstance(operand, (int, float)):
                raise self.refuse(node)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.Dict):
            return self.mapping(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            if any(keyword.arg is None for keyword in node.keywords):  # dict(**other)
                raise self.refuse(node)
            return {keyword.arg: self.value(keyword.value, str(keyword.arg)) for keyword in node.keywords}
        if key == ACTIVATION_KEY and isinstance(node, (ast.Attribute, ast.Name)):
            name = _dotted(node)
            if name.startswith(MODULE_PREFIXES):
                try:
                    return activation_name(name)
                except UserError as exc:
                    raise UserError(f"{self.where}: {exc}") from None
        raise self.refuse(node)

    def mapping(self, node: ast.Dict) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        for key_node, value_node in zip(node.keys, node.values):
            if not (isinstance(key_node, ast.Constant) and isinstance(key_node.value, str)):
                raise self.refuse(key_node if key_node is not None else node)  # None: {**other}
            result[key_node.value] = self.value(value_node, key_node.value)
        return result


def parse_python_value(text: str, where: str) -> Any:
    """The plain value a zoo file's Python expression stands for, without running it."""
    if len(text) > MAX_LENGTH:
        raise UserError(f"{where}: expression of {len(text)} characters is too long to be a hyperparameter")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise UserError(f"{where}: {text!r} is not a Python expression ({reason})") from None
    return _Reader(where, text.strip()).value(tree.body)


def format_python_value(value: Any) -> str:
    """The inverse of ``parse_python_value`` for the values it returns, in the zoo's style
    (``dict(net_arch=[64, 64], activation_fn=nn.ReLU)``): what an exported ``config.yml`` holds."""
    if isinstance(value, dict):
        if all(isinstance(key, str) and key.isidentifier() for key in value):
            items = []
            for key, item in value.items():
                shown = activation_name(item) if key == ACTIVATION_KEY and isinstance(item, str) else format_python_value(item)
                items.append(f"{key}={shown}")
            return f"dict({', '.join(items)})"
        return "{" + ", ".join(f"{key!r}: {format_python_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_python_value(item) for item in value) + "]"
    if isinstance(value, type):  # an activation class given from Python
        return activation_name(f"nn.{value.__name__}")
    return repr(value)
