"""recplat: a Ray-based platform for LLM-based multi-domain recommendation research."""

__version__ = "0.1.0"
