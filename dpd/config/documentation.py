"""The config documented from its declarations: each key's default and meaning (``config_table``),
and docs/CONFIGURATION.md's table (``config_markdown``, ``dpd config``)."""

import dataclasses
import json
from typing import (
    Any,
    Iterator,
    Tuple,
    get_type_hints,
)

from dpd.config.schema import RunConfig


def _shown_default(f: "dataclasses.Field[Any]") -> str:
    """A field's default as the docs show it: markdown, YAML's spelling."""
    if f.metadata.get("shown"):
        return str(f.metadata["shown"])
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value)}`"
    return repr(value)


def config_table(cls: type = RunConfig, prefix: str = "") -> Iterator[Tuple[str, str, str]]:
    """(key, default, meaning) of every settable key, in declaration order, from the fields' docs."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from config_table(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, _shown_default(f), f.metadata.get("doc", "")


def config_markdown() -> str:
    """docs/CONFIGURATION.md's table: ``config_table()`` as markdown."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, meaning in config_table():
        cells = (f"`{key}`", default, meaning)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
