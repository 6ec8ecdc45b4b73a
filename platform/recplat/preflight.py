"""Checks that run on the driver before Ray starts: output folders and model paths.

Without them a bad `--out` or model path shows up minutes later, deep inside Ray workers, as a
stack of tracebacks (a missing local model even as "not a valid repo id"). Each check raises one
RecplatError / ConfigError line naming the path and what is wrong with it.

    check_output_dir(args.out, overwrite=args.overwrite)   # recplat prepare
    check_writable(out); check_output_dir(out / "data", overwrite=True)   # recplat run, demo
    check_models(cfg.model_dump(), where="jobs/llmrec/table4_bert.yaml (profile paper): recipe")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from recplat.errors import ConfigError, RecplatError
from recplat.storage import check_replaceable, disk_error


def check_writable(path: str | Path) -> None:
    """`path` (a folder to create or fill) can be written: no file in the way, and its nearest
    existing folder accepts a new file (not a read-only file system, not full, permitted)."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise RecplatError(f"{path}: cannot write: a path component is a file, not a folder{where}")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".recplat-probe-"):
            pass
    except OSError as exc:
        raise (disk_error(exc, path) or RecplatError(f"{path}: cannot write: {exc.strerror or exc}")) from None


def check_output_dir(path: str | Path, overwrite: bool = False) -> None:
    """A folder recplat will write as a whole (a prepared dataset): writable, and if it exists,
    replaced only with `overwrite` and only when recplat wrote it (storage.check_replaceable)."""
    path = Path(path).expanduser()
    check_writable(path)
    if path.exists():
        if not overwrite:
            raise RecplatError(f"{path} already exists: choose another --out or pass --overwrite")
        check_replaceable(path)


def looks_like_local_path(name: str) -> bool:
    """A model name meant as a folder (a Hugging Face id is `name` or `org/name`)."""
    return (
        name.startswith(("/", "./", "../", "~")) or name in (".", "..") or name.count("/") > 1
        or os.sep != "/" and os.sep in name
    )


def check_model_name(name: str, where: str) -> None:
    """`model.name` resolves: a local folder exists; with HF_HUB_OFFLINE=1 a hub id is cached."""
    if name.startswith("offline:"):
        return  # packaged models: models/offline.py says what to install when one is missing
    if looks_like_local_path(name) or Path(name).expanduser().exists():
        path = Path(name).expanduser()
        if not path.exists():
            raise ConfigError(f"{where}.model.name: {name}: no such folder (a local model must exist on this "
                              "machine; a Hugging Face id looks like org/name)")
        if not path.is_dir():
            raise ConfigError(f"{where}.model.name: {name}: not a folder (give the model's folder, with config.json)")
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ConfigError(f"{where}.model.name: {name}: not in the local Hugging Face cache and HF_HUB_OFFLINE "
                              "is set (download it first, or give a local folder)")


def check_models(config: dict[str, Any], where: str) -> None:
    """Every `model.name` in a recipe config (a dict, e.g. `cfg.model_dump()`)."""
    for key, value in _model_names(config, ""):
        check_model_name(value, f"{where}{key}")


def _model_names(node: Any, prefix: str):
    if isinstance(node, dict):
        model = node.get("model")
        if isinstance(model, dict) and isinstance(model.get("name"), str):
            yield prefix, model["name"]
        for key, value in node.items():
            yield from _model_names(value, f"{prefix}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _model_names(value, f"{prefix}.{i}")


def check_run(out: str | Path, data_dirs: list[Path], configs: list[dict[str, Any]], where: str) -> None:
    """`recplat run` / `recplat demo`: the run folder is writable; each data folder, which a changed
    prepare config replaces, is new or recplat's; every model path resolves."""
    check_writable(out)
    for data_dir in dict.fromkeys(Path(d) for d in data_dirs):
        check_output_dir(data_dir, overwrite=True)
    for config in configs:
        check_models(config, where)
