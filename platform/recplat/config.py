"""Typed configs: YAML files -> pydantic models, dotted-key overrides, packaged presets, errors
that name the key. The one override walker, YAML loader and preset lookup of the project.

Precedence, highest first: command-line `key=value` overrides > the config file > model defaults.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from recplat.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10x faster on the whole catalog


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def load_yaml(path: str | Path, shown: str | None = None) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; errors name `shown` (default: the path)."""
    shown = shown or str(path)
    if not Path(path).is_file():
        raise ConfigError(f"{shown}: config file not found")
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: the top level must be a mapping, got {type(data).__name__}")
    return data


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


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
    """Return a copy of `data` with every command-line `key=value` override applied.

    Keys are dotted paths; a number indexes a list (`sources.0.users=20000`).
    """
    out = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(out, keys, value, f"override {text!r}")
    return out


def set_dotted(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of `data` with `{dotted.key: value}` applied: the same walk as `apply_overrides`, for
    values already typed (a job file's sweep overrides, the paths `recplat run` fills in)."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        _set_path(out, str(dotted).split("."), copy.deepcopy(value), str(dotted))
    return out


def get_dotted(data: Any, dotted: str) -> Any:
    """The value at a dotted path of plain data, None where the path does not exist."""
    node = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set_path(root: dict[str, Any], keys: list[str], value: Any, label: str) -> None:
    node: Any = root
    for depth, key in enumerate(keys):
        where = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"{label}: {where}: no such list entry (the list has {len(node)})")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
        else:
            raise ConfigError(f"{label}: {where}: its parent is a value, not a section")


def validate(model: type[M], data: dict[str, Any], source: str = "config") -> M:
    """Build `model` from plain data; a failure names `source` and the offending dotted key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key")
            elif err["type"] == "value_error":  # our validators' messages start with the key they check
                problems.append(f"{key + ': ' if key else ''}{err['msg'].removeprefix('Value error, ')}")
            else:
                got = err.get("input")
                shown = "" if isinstance(got, (dict, list)) else f", got {got!r}"
                problems.append(f"{key or '(top level)'}: {err['msg']}{shown}")
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
    source = str(path) if path else "config"
    merged = apply_overrides(data, list(overrides))
    try:
        return validate(model, merged, source=source)
    except ConfigError:
        if not overrides or not _is_valid(model, data):
            raise
    # the file alone is valid, so the command line broke it: the error names the command line
    return validate(model, merged, source=f"command line ({' '.join(overrides)}) over {source}")


def _is_valid(model: type[M], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


# --- packaged prepare presets: platform/recplat/data/defaults/<name>.yaml ----------------------
DEFAULT_PRESET = "ml100k"  # what `recplat prepare` uses without --config / --preset
PREPARE_REFERENCE = "prepare"  # defaults/prepare.yaml: every key with its default, not a preset


@functools.lru_cache(maxsize=1)
def preset_names() -> tuple[str, ...]:
    from importlib import resources

    folder = resources.files("recplat.data") / "defaults"
    names = (p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
    return tuple(sorted(n for n in names if n != PREPARE_REFERENCE))


def prepare_reference_file():
    """defaults/prepare.yaml: every `recplat prepare` key, its type, meaning and default."""
    from importlib import resources

    return resources.files("recplat.data") / "defaults" / f"{PREPARE_REFERENCE}.yaml"


def preset_file(name: str):
    """The packaged preset's file; an unknown name is a ConfigError listing the choices."""
    from importlib import resources

    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())}")
    return resources.files("recplat.data") / "defaults" / f"{name}.yaml"


def load_preset(name: str) -> dict[str, Any]:
    """A fresh copy of a preset's plain data."""
    return copy.deepcopy(parsed_preset(name))


@functools.lru_cache(maxsize=None)
def parsed_preset(name: str) -> dict[str, Any]:
    """A preset's plain data, parsed once per process (the catalog resolves hundreds of variants):
    shared, so never change it; `load_preset` gives a copy to change."""
    return load_yaml(preset_file(name))
