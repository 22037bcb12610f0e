"""Building a checked config from layers: YAML files, ``--set key=value`` overrides, mappings
merged in order, every key and type checked against the schema (``build_config``)."""

import dataclasses
import math
from pathlib import Path
from typing import (
    Any,
    Dict,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import yaml

from dpd.config.schema import CommaSeparated, DistillConfig, DistillSettings, RunConfig, check_values, config_keys
from dpd.errors import UserError, unknown_choice


def parse_scalar(text: str) -> Any:
    """YAML-parse a command-line value, reading ``1e-4`` as a number (YAML 1.1 does not)."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
    return value


def parse_overrides(items: List[str]) -> Dict[str, Any]:
    """``["distill.alpha=0.75", "algo_kwargs.n_steps=1024"]`` to a nested dict."""
    nested: Dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        parts = key.strip().split(".")
        layer: Dict[str, Any] = {parts[-1]: parse_scalar(text)}
        for part in reversed(parts[:-1]):
            layer = {part: layer}
        nested = merge(expand_shortcuts(nested), expand_shortcuts(layer))
    return nested


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    """Recursive dict merge; ``override`` wins."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """A YAML mapping from a file; missing files and bad YAML are user errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return data


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check one value against its field type, converting where it is unambiguous."""
    if get_origin(hint) is Union:  # Optional[X]
        if value is None:
            return None
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key {key}: expected true or false, got {value!r}")
    if hint is int:  # a float that is whole (1e6) counts; inf and nan do not
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or int(value) != value:
            raise UserError(f"config key {key}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"config key {key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is CommaSeparated:  # ``3``, ``0,3`` and ``[0, 3]`` as YAML reads them: one string
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, bool) or not isinstance(item, (str, int)) for item in items):
            raise UserError(f"config key {key}: expected a comma-separated list, got {value!r}")
        return ",".join(str(item) for item in items)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"config key {key}: expected a string, got {value!r}")
        return value
    if get_origin(hint) is list:
        if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
            raise UserError(f"config key {key}: expected a list of mappings, got {value!r}")
        return [dict(item) for item in value]
    if not isinstance(value, Mapping):
        raise UserError(f"config key {key}: expected a mapping, got {value!r}")
    return dict(value)


def _expand_section(section: type, value: Any) -> Any:
    """A section given as one word: ``distill: off`` (YAML's off is false) is ``distill.enabled:
    false``, ``share: on`` is ``share.enabled: true``, ``guide: best`` is ``guide.mode: best``."""
    names = {f.name for f in dataclasses.fields(section)}
    if isinstance(value, bool) and "enabled" in names:
        return {"enabled": value}
    if isinstance(value, str) and "mode" in names:
        return {"mode": value}
    return value


def expand_shortcuts(data: Mapping[str, Any], cls: type = RunConfig) -> Dict[str, Any]:
    """``data`` with every one-word section written out, so that layers merge key by key
    (``guide: best`` in a file and ``--set guide.beta=2`` keep both)."""
    hints = get_type_hints(cls)
    expanded = dict(data)
    for key, value in data.items():
        hint = hints.get(key)
        if hint is not None and dataclasses.is_dataclass(hint):
            value = _expand_section(hint, value)
            expanded[key] = expand_shortcuts(value, hint) if isinstance(value, Mapping) else value
    return expanded


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_choice("config key", prefix + str(key), config_keys(cls, prefix))
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = _expand_section(hint, value)
            if not isinstance(value, Mapping):
                raise UserError(f"config key {prefix}{key}: expected a mapping of {', '.join(config_keys(hint))}")
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(prefix + key, value, hint)
    return cls(**kwargs)


def _merged(layers: Tuple[Optional[Mapping[str, Any]], ...]) -> Dict[str, Any]:
    merged: Dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = merge(merged, layer)
    return merged


def build_distill_settings(*layers: Optional[Mapping[str, Any]], prefix: str = "distill.") -> DistillSettings:
    """``DistillSettings`` from mappings merged in order (later wins), every key and type checked."""
    return _build(DistillSettings, _merged(layers), prefix)


def build_distill_config(*layers: Optional[Mapping[str, Any]], prefix: str = "distill.") -> DistillConfig:
    """A resolved ``DistillConfig`` from mappings merged in order (later wins); a key at ``None``
    in a layer leaves the value of the layers below."""
    layers = tuple({key: value for key, value in layer.items() if value is not None} if layer else None for layer in layers)
    return _build(DistillConfig, _merged(layers), prefix)


def check_finite(value: Any, key: str) -> None:
    """Refuse NaN and infinity anywhere in a config, untyped keys (``algo_kwargs``, ``env_kwargs``)
    included: no setting means them, and a NaN learning rate or reward scale trains a NaN network
    without a word."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key {key}: expected a finite number, got {value!r}")
    if isinstance(value, Mapping):
        for name, item in value.items():
            check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, f"{key}[{index}]")


def build_config(*layers: Optional[Mapping[str, Any]]) -> RunConfig:
    """A ``RunConfig`` from mappings merged in order (later wins), with every key checked."""
    merged: Dict[str, Any] = {}
    for layer in layers:
        if layer:
            if not isinstance(layer, Mapping):
                raise UserError(f"a config must be a mapping of keys to values, got {type(layer).__name__}")
            merged = merge(merged, expand_shortcuts(layer))
    cfg = _build(RunConfig, merged)  # typed keys first: their messages say what is expected
    check_finite(merged, "")
    check_values(cfg)
    return cfg
