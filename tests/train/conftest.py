"""DeepSpeed on CPU: its CPU accelerator, and one cache for the op it compiles (docs/stack.md).
Set before anything imports deepspeed; Ray workers started later inherit them."""

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/recplat/torch_extensions"))
