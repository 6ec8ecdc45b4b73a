"""DeepSpeed on CPU: its CPU accelerator, and the op cache `make install` fills (docs/stack.md).
Set before anything imports deepspeed; Ray workers started later inherit them."""

from recplat.train.loop import use_cpu_deepspeed

use_cpu_deepspeed()
