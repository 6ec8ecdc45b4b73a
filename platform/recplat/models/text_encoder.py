"""LLM-Rec's shared user/item text encoder (spec §1.3–1.6, §1.10).

One backbone with shared weights encodes both sides:

- item input (Eq. 1): ``[CLS] w1..wK`` for an encoder (BERT), ``w1..wK </s>`` for a decoder (OPT)
  or the encoder of an encoder–decoder (FLAN-T5); ``w1..wK`` are the tokens of ``title + "; "``
  without special tokens, truncated to 40;
- user input (Eq. 2): the title tokens of the <= 10 most recent history items, concatenated, with
  one ``[CLS]`` in front or one ``</s>`` at the end;
- pooling (Eq. 3–4): the ``[CLS]`` state (encoder) or the state of the last real token, the
  appended ``</s>`` (decoder, encoder–decoder);
- score (Eq. 5): inner product h_u . h_v; loss (Eq. 6): `recplat.models.losses.candidate_cross_entropy`.

Families: ``"encoder"`` (BERT-style), ``"decoder"`` (OPT/GPT/Llama-style), ``"encoder_decoder"``
(T5-style; only the encoder stack is loaded, as LLM-Rec's code does with `T5EncoderModel`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig

from recplat.errors import ConfigError
from recplat.models.padding import (
    first_real_index,
    last_real_index,
    pad_sequences,
    positions_from_mask,
)

FAMILIES = ("encoder", "decoder", "encoder_decoder")
MAX_TITLE_TOKENS = 40  # spec §1.4 / §1.8
MAX_HISTORY_ITEMS = 10

_ENCODER_TYPES = {
    "albert", "bert", "deberta", "deberta-v2", "distilbert", "electra", "ernie", "modernbert",
    "mpnet", "roberta", "xlm-roberta",
}  # fmt: skip
_DECODER_TYPES = {
    "bloom", "falcon", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neo", "gpt_neox", "gptj",
    "llama", "mistral", "mixtral", "opt", "phi", "phi3", "qwen2", "qwen3",
}  # fmt: skip
_ENCODER_DECODER_TYPES = {"t5", "mt5", "umt5", "bart", "mbart"}


def infer_family(config: PretrainedConfig) -> str:
    """The backbone family from a HF config: `is_encoder_decoder`, then `model_type`, then the
    class names in `architectures`."""
    model_type = getattr(config, "model_type", "")
    if getattr(config, "is_encoder_decoder", False) or model_type in _ENCODER_DECODER_TYPES:
        return "encoder_decoder"
    if model_type in _ENCODER_TYPES:
        return "encoder"
    if model_type in _DECODER_TYPES:
        return "decoder"
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or getattr(config, "is_decoder", False):
        return "decoder"
    if any(a.endswith(("ForConditionalGeneration", "ForSeq2SeqLM")) for a in archs):
        return "encoder_decoder"
    if any(a.endswith(("ForMaskedLM", "ForMultipleChoice")) for a in archs):
        return "encoder"
    raise ConfigError(
        f"cannot tell the family of model_type={model_type!r} (architectures={archs}); "
        f"pass family= one of {FAMILIES}"
    )


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ConfigError(f"backbone family must be one of {FAMILIES}, got {family!r}")
    return family


def load_backbone(name_or_path: str, family: str | None = None, **model_kwargs):
    """(model, tokenizer, family) for a HF id or a local folder.

    The model is the bare backbone without any head (`AutoModel`: `BertModel`, `OPTModel`, ...);
    for the encoder_decoder family only the encoder stack (`T5EncoderModel`). `model_kwargs` go to
    `from_pretrained` (`dtype=`, `revision=`, ...). Offline runs need `HF_HUB_OFFLINE=1` and a
    local path or a cached id.
    """
    # what locates the files (a GGUF file, a revision) applies to config and tokenizer too
    shared = {k: model_kwargs[k] for k in ("gguf_file", "revision", "trust_remote_code") if k in model_kwargs}
    config = AutoConfig.from_pretrained(name_or_path, **shared)
    family = _check_family(family or infer_family(config))
    if family == "encoder_decoder":
        model = _load_encoder_stack(name_or_path, config, **model_kwargs)
    else:
        model = AutoModel.from_pretrained(name_or_path, config=config, **model_kwargs)
    # LLM-Rec pools hidden states (Eq. 3-4), never BERT's pooler head: left in, its weights would be
    # trainable under full fine-tuning yet never get a gradient, which DDP refuses at the second step.
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **shared)
    boundary_token_id(tokenizer, family)  # fail now, not at the first batch
    return model, tokenizer, family


def _load_encoder_stack(name_or_path: str, config: PretrainedConfig, **model_kwargs) -> nn.Module:
    from transformers import MT5EncoderModel, T5EncoderModel, UMT5EncoderModel

    encoder_classes = {"t5": T5EncoderModel, "mt5": MT5EncoderModel, "umt5": UMT5EncoderModel}
    cls = encoder_classes.get(config.model_type)
    if cls is not None:
        return cls.from_pretrained(name_or_path, config=config, **model_kwargs)
    return AutoModel.from_pretrained(name_or_path, config=config, **model_kwargs).get_encoder()


def boundary_token_id(tokenizer, family: str) -> int:
    """The one special token LLM-Rec adds: [CLS] in front (encoder) or EOS at the end (others)."""
    _check_family(family)
    name = "cls_token" if family == "encoder" else "eos_token"
    token_id = getattr(tokenizer, f"{name}_id", None)
    if token_id is None:
        raise ConfigError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no {name}, which the "
            f"{family} family needs; set tokenizer.{name} to an existing token"
        )
    return int(token_id)


class TitleTokens:
    """Every item title tokenized once; builds LLM-Rec item and user inputs and padded batches.

    `ids[item_idx]` is the token list of ``title + "; "`` (no special tokens, <= 40 tokens); index 0
    is padding and always the empty list.
    """

    def __init__(self, ids: list[list[int]], family: str, boundary_id: int, pad_id: int,
                 max_history: int = MAX_HISTORY_ITEMS):  # fmt: skip
        self.ids = ids
        self.family = _check_family(family)
        self.boundary_id = boundary_id
        self.pad_id = pad_id
        self.max_history = max_history

    @classmethod
    def from_titles(cls, tokenizer, titles: Sequence[str | None] | Mapping[int, str], family: str,
                    max_title_tokens: int = MAX_TITLE_TOKENS,
                    max_history: int = MAX_HISTORY_ITEMS) -> TitleTokens:  # fmt: skip
        """`titles[i]` is the title of item i (a list whose slot 0 is ignored, or a mapping i -> title)."""
        if isinstance(titles, Mapping):
            table: list[str | None] = [None] * (max(titles, default=0) + 1)
            for idx, title in titles.items():
                table[idx] = title
        else:
            table = list(titles)
        for idx in range(1, len(table)):
            if table[idx] is None:
                raise ValueError(f"item {idx} has no title (index 0 is the only padding slot)")
        texts = [t + "; " for t in table[1:]]
        encoded = (
            tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_title_tokens)["input_ids"]
            if texts
            else []
        )
        ids = [[], *(list(x) for x in encoded)]
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(ids, family, boundary_token_id(tokenizer, family), pad_id, max_history)

    def __len__(self) -> int:
        return len(self.ids)

    def _wrap(self, ids: list[int]) -> list[int]:
        return [self.boundary_id, *ids] if self.family == "encoder" else [*ids, self.boundary_id]

    def item_input(self, item_idx: int) -> list[int]:
        """Eq. 1: [CLS] + title ids (encoder) or title ids + [EOS] (decoder, encoder_decoder)."""
        return self._wrap(self.ids[int(item_idx)])

    def user_input(self, history: Sequence[int] | torch.Tensor) -> list[int]:
        """Eq. 2: title ids of the <= max_history most recent items (0 = padding, skipped, either
        side), oldest first, then one [CLS] in front or one [EOS] at the end."""
        items = [int(i) for i in history if int(i) != 0][-self.max_history :]
        return self._wrap([tok for i in items for tok in self.ids[i]])

    def item_batch(self, item_idx: Sequence[int] | torch.Tensor, padding_side: str = "right"):
        """Item inputs for `item_idx` (any shape; flattened row-major) -> (input_ids, attention_mask) [N, T]."""
        flat = torch.as_tensor(item_idx).reshape(-1).tolist()
        return pad_sequences([self.item_input(i) for i in flat], self.pad_id, padding_side)

    def user_batch(self, histories: Sequence[Sequence[int]] | torch.Tensor, padding_side: str = "right"):
        """User inputs for [B, L] histories (0-padded on either side, or ragged lists) -> [B, T]."""
        return pad_sequences([self.user_input(h) for h in histories], self.pad_id, padding_side)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, family: str) -> torch.Tensor:
    """Eq. 3–4 pooling: [B, T, d] -> [B, d].

    encoder: the [CLS] state, i.e. the first real token (position 0 under right padding, as in
    LLM-Rec's code; under left padding [CLS] follows the pads). decoder / encoder_decoder: the
    last real token (the appended EOS): `mask.sum - 1` under right padding, `T - 1` under left;
    computed as the index of the last 1 in the mask, which is right for both.
    """
    _check_family(family)
    index = first_real_index(attention_mask) if family == "encoder" else last_real_index(attention_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index.to(hidden.device)]


def _accepts_position_ids(backbone: nn.Module) -> bool:
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return "position_ids" in inspect.signature(base.forward).parameters


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T, d] -> [B, d]: the mean over real tokens (not the paper's; sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


SCORES = ("dot", "cosine")
POOLINGS = ("token", "mean")


class DualEncoder(nn.Module):
    """LLM-Rec: one backbone (optionally LoRA-wrapped) encodes users and items; score = h_u . h_v.

    Where the backbone takes `position_ids` (BERT, OPT, GPT-2, Llama), positions are counted over
    real tokens only, so left- and right-padded batches give the same vectors (T5 has relative
    positions and needs none).

    `score="dot"` and `pooling="token"` are Eq. 3–5 as written. `score="cosine"` (not the paper's)
    unit-normalises the pooled vectors and divides the training logits by `temperature`;
    `pooling="mean"` averages the real tokens' states: together, how a sentence-transformers encoder
    such as the offline MiniLM was pretrained (see `llmrec.ModelSettings.score`).
    """

    def __init__(self, backbone: nn.Module, family: str, score: str = "dot", temperature: float = 1.0,
                 pooling: str = "token"):  # fmt: skip
        super().__init__()
        if score not in SCORES or pooling not in POOLINGS or temperature <= 0:
            raise ConfigError(f"score must be one of {SCORES}, pooling one of {POOLINGS} and temperature > 0, "
                              f"got {score!r}, {pooling!r}, {temperature}")
        self.backbone = backbone
        self.family = _check_family(family)
        self.pooling = pooling
        self.normalize = score == "cosine"
        self.temperature = temperature
        self._pass_positions = _accepts_position_ids(backbone)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids and mask -> [B, d] pooled vectors (Eq. 3–4), unit length under cosine."""
        extra = {"position_ids": positions_from_mask(attention_mask)} if self._pass_positions else {}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra)
        if self.pooling == "mean":
            pooled = mean_pool(out.last_hidden_state, attention_mask)
        else:
            pooled = pool(out.last_hidden_state, attention_mask, self.family)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    @staticmethod
    def score(user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """Eq. 5 inner product. item_vecs [B, C, d] (per-user candidates) -> [B, C];
        item_vecs [N, d] (one shared table, e.g. at evaluation) -> [B, N]."""
        if item_vecs.dim() == 2:
            return user_vecs @ item_vecs.T
        return torch.einsum("bd,bcd->bc", user_vecs, item_vecs)

    def forward(self, user_ids: torch.Tensor, user_mask: torch.Tensor,
                item_ids: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Candidate logits [B, C]: users [B, T_u], candidates [B, C, T_i] (or [B*C, T_i]).

        Item encodings are recomputed every step, so the item tower trains jointly (spec §1.6).
        With the positive in column 0, `candidate_cross_entropy(logits)` is Eq. 6.
        """
        users = self.encode(user_ids, user_mask)
        batch = users.shape[0]
        items = self.encode(item_ids.reshape(-1, item_ids.shape[-1]), item_mask.reshape(-1, item_mask.shape[-1]))
        return self.score(users, items.reshape(batch, -1, items.shape[-1])) / self.temperature
