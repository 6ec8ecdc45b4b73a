"""DeepSpeed on CPU: its CPU accelerator, and the op cache `make install` fills (docs/stack.md).
Set before anything imports deepspeed; Ray workers started later inherit them."""

import os

from recplat.train.loop import torch_extensions_dir

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", torch_extensions_dir())
