"""Typed configs: YAML files -> pydantic models, `key=value` overrides, errors that name the key.

Precedence, highest first: command-line `key=value` overrides > the config file > model defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from recplat.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value), the value parsed as YAML (so 5, 0.1, true, [a, b])."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected key=value (for example kcore.user=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with every `key=value` override applied.

    Keys are dotted paths; a number indexes a list (`sources.0.users=20000`).
    """
    out = _deep_copy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = out
        for depth, key in enumerate(keys):
            where = ".".join(keys[: depth + 1])
            last = depth == len(keys) - 1
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ConfigError(f"override {text!r}: {where}: no such list entry (the list has {len(node)})")
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {where}: its parent is a value, not a section")
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
    return out


def validate(model: type[M], data: dict[str, Any], source: str = "config") -> M:
    """Build `model` from plain data; a failure names `source` and the offending dotted key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key")
            else:
                got = err.get("input")
                shown = "" if isinstance(got, (dict, list)) else f", got {got!r}"
                problems.append(f"{key}: {err['msg']}{shown}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(
    model: type[M], path: str | Path | None, overrides: list[str] = (), relative_to_file: bool = True
) -> M:
    """File (optional) + overrides -> validated model.

    When `model` has a `resolve_file_paths(data, base_dir)` classmethod and `relative_to_file`, the
    relative paths written in the file are resolved against the file's folder first (overrides,
    applied after, stay relative to the working directory). Packaged presets pass False.
    """
    data = load_yaml(path) if path else {}
    resolve = getattr(model, "resolve_file_paths", None)
    if path and relative_to_file and resolve is not None:
        data = resolve(data, Path(path).parent)
    data = apply_overrides(data, list(overrides))
    return validate(model, data, source=str(path) if path else "config")


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
