"""X-Cross layer-wise integration of n frozen source encoders (spec §2.5, Eq. 3–6).

`EncoderStack` steps one HF encoder a transformer block at a time, reproducing exactly what the
model's own forward does between blocks (attention mask, DeBERTa's relative positions and conv).
`LayerIntegrator` holds the trainable X-Cross parameters: W^(l) for each integrated layer and the
domain weights w_m. `XCrossEncoder` runs the sources in lockstep and refines their states after
every integrated block, so the refined h̃_m^(l) is the input of source m's block l+1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import PeftModel
from torch import Tensor, nn
from transformers.masking_utils import create_bidirectional_mask

from recplat.errors import ConfigError

# Encoders whose base-model forward is: embeddings -> create_bidirectional_mask -> encoder.layer[i](h, mask).
BERT_LIKE = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
DEBERTA = "deberta-v2"  # DeBERTa-v2 and -v3 share this model_type


@dataclass
class _DebertaState:
    """What DebertaV2Encoder.forward computes once and hands to every block."""

    mask: Tensor  # [B, 1, T, T] pairwise mask from encoder.get_attention_mask
    input_mask: Tensor  # [B, T] padding mask, used by the conv after block 0
    relative_pos: Tensor | None
    rel_embeddings: Tensor | None


class EncoderStack:
    """Steps one HF encoder (BERT-like: bert/roberta/...; and DeBERTa-v2/v3) one transformer block at a time.

    `model` is a plain HF model or a peft `PeftModel` wrapping one; the LoRA layers injected into the
    blocks stay active. Running `embed` and then `layer(0..num_layers-1)` equals
    `model(...).last_hidden_state` (tests/models/test_layer_integration.py checks both architectures).
    """

    def __init__(self, model: nn.Module):
        if isinstance(model, PeftModel):
            model = model.get_base_model()
        model = getattr(model, "base_model", model)  # a task model (…ForMultipleChoice) -> its encoder
        config = getattr(model, "config", None)
        self.model_type = getattr(config, "model_type", None)
        if self.model_type not in (*BERT_LIKE, DEBERTA):
            raise ConfigError(
                f"X-Cross sources must be BERT-like or DeBERTa-v2/v3 encoders "
                f"({', '.join((*BERT_LIKE, DEBERTA))}); got model_type={self.model_type!r}"
            )
        if getattr(config, "is_decoder", False):
            raise ConfigError(f"X-Cross needs a bidirectional encoder; {self.model_type} has is_decoder=True")
        if self.model_type == DEBERTA and getattr(model, "z_steps", 0) > 1:
            raise ConfigError("DebertaV2Model.z_steps > 1 (re-running the last block) is not supported")
        self.model = model
        self.config = config
        self.blocks = model.encoder.layer
        self.num_layers = len(self.blocks)
        self.hidden_size = config.hidden_size

    def embed(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None):
        """Embedding output [B, T, d] and the per-forward state every block needs."""
        model = self.model
        if self.model_type == DEBERTA:
            # DebertaV2Model.forward: default token types, embeddings masked by the padding mask
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask)
            encoder = model.encoder  # DebertaV2Encoder.forward, before its loop
            state = _DebertaState(
                mask=encoder.get_attention_mask(attention_mask),
                input_mask=attention_mask,
                relative_pos=encoder.get_rel_pos(hidden),
                rel_embeddings=encoder.get_rel_embedding(),
            )
            return hidden, state
        # BertModel.forward (transformers 5): the mask is built by masking_utils for the configured
        # attention implementation (a 4D bool/float mask for sdpa/eager, None when nothing is padded).
        hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        if hasattr(model, "embeddings_project"):  # ELECTRA with embedding_size != hidden_size
            hidden = model.embeddings_project(hidden)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        return hidden, mask

    def layer(self, index: int, hidden: Tensor, state) -> Tensor:
        """Output hidden [B, T, d] of transformer block `index` (0-based) for input `hidden`."""
        block = self.blocks[index]
        if self.model_type != DEBERTA:
            return block(hidden, state)
        output, _ = block(
            hidden, state.mask, relative_pos=state.relative_pos, rel_embeddings=state.rel_embeddings
        )
        conv = self.model.encoder.conv  # DeBERTa-v2 (conv_kernel_size > 0): conv over block 0's input
        if index == 0 and conv is not None:
            output = conv(hidden, output, state.input_mask)
        return output


class LayerIntegrator(nn.Module):
    """X-Cross Eq. 4–6 parameters: W^(l) for each integrated layer, domain weights w_m.

    W^(l) ∈ R^{2n(n-1) × nd} (no bias, no softmax, signed), one per integrated layer; the top
    `integrate_layers` blocks are integrated. z^(l) = W^(l) h_concat is laid out per domain m (in
    order) as its n-1 scaling coefficients s_{m,j} then its n-1 interaction coefficients γ_{m,j},
    j ≠ m ascending. α, β are hyper-parameters (α=β=0: "-Layers", β=0: "-Interactions", α=0: "-Experts").
    """

    def __init__(self, num_sources: int, hidden_size: int, num_layers: int, integrate_layers: int,
                 alpha: float, beta: float):  # fmt: skip
        super().__init__()
        if num_sources < 2:
            raise ConfigError(f"X-Cross needs at least 2 source models, got {num_sources}")
        if not 1 <= integrate_layers <= num_layers:
            raise ConfigError(
                f"integrate_layers must be in 1..{num_layers} (the sources' number of layers), got {integrate_layers}"
            )
        n = num_sources
        self.num_sources, self.hidden_size, self.num_layers = n, hidden_size, num_layers
        self.alpha, self.beta = float(alpha), float(beta)
        self.integrated = list(range(num_layers - integrate_layers, num_layers))
        # W^(l) starts at zero: z = 0 makes every h̃_m = h_m, so training starts from the independent
        # source models merged by Eq. 6 (the "-Layers" model, averaged since w_m = 1/n). The
        # gradient still flows: dz/dW = h_concat ≠ 0, so dL/dW ≠ 0 once α or β is nonzero.
        self.coefficients = nn.ModuleDict(
            {str(index): nn.Linear(n * hidden_size, 2 * n * (n - 1), bias=False) for index in self.integrated}
        )
        for linear in self.coefficients.values():
            nn.init.zeros_(linear.weight)
        self.domain_weights = nn.Parameter(torch.full((n,), 1.0 / n))  # w_m of Eq. 6, unconstrained
        # others[m] = the n-1 domains j ≠ m in ascending order (the order of z's coefficients)
        others = [[j for j in range(n) if j != m] for m in range(n)]
        self.register_buffer("others", torch.tensor(others, dtype=torch.long), persistent=False)

    def refine(self, index: int, states: list[Tensor]) -> list[Tensor]:
        """X-Cross Eq. 3–5 after block `index`, per token (identity if the layer is not integrated):

        h_concat = [h_1; …; h_n] (Eq. 3), z = W^(l) h_concat (Eq. 4),
        h̃_m = h_m + α Σ_{j≠m} s_{m,j} h_j + β Σ_{j≠m} γ_{m,j} (h_m − h_j) (Eq. 5).
        """
        key = str(index)
        if key not in self.coefficients:
            return list(states)
        n = self.num_sources
        h = torch.stack(states, dim=-2)  # [..., n, d]
        z = self.coefficients[key](torch.cat(states, dim=-1))  # [..., 2n(n-1)]
        z = z.unflatten(-1, (n, 2, n - 1))  # per domain m: (s_{m,·}, γ_{m,·})
        s, gamma = z[..., 0, :].unsqueeze(-1), z[..., 1, :].unsqueeze(-1)  # [..., n, n-1, 1]
        h_others = h[..., self.others, :]  # [..., n, n-1, d]: h_others[m, k] = h_{others[m][k]}
        experts = (s * h_others).sum(dim=-2)
        interactions = (gamma * (h.unsqueeze(-2) - h_others)).sum(dim=-2)
        refined = h + self.alpha * experts + self.beta * interactions
        return list(refined.unbind(dim=-2))

    def combine(self, states: list[Tensor]) -> Tensor:
        """X-Cross Eq. 6: h_final = Σ_m w_m h̃_m^(L)."""
        return torch.einsum("m,m...->...", self.domain_weights, torch.stack(states))


class XCrossEncoder(nn.Module):
    """n frozen source encoders run in lockstep; after each integrated block the refined states feed each source's next block.

    Every source parameter (base weights and LoRA) is frozen here; only `integrator` trains. The
    sources are registered submodules (so `.to()`, `.train()` and `.eval()` reach them; in train mode
    their dropout is active) and therefore also sit in `state_dict()`: save `integrator.state_dict()`.
    """

    def __init__(self, sources: list[nn.Module], integrate_layers: int, alpha: float, beta: float):
        super().__init__()
        stacks = [EncoderStack(source) for source in sources]
        shapes = [(st.model_type, st.num_layers, st.hidden_size) for st in stacks]
        if len(set(shapes)) > 1:
            listed = "; ".join(f"source {i}: {t}, {L} layers, hidden {d}" for i, (t, L, d) in enumerate(shapes))
            raise ConfigError(f"X-Cross sources must share architecture, num_layers and hidden_size; {listed}")
        self.sources = nn.ModuleList(sources)
        self.sources.requires_grad_(False)
        self.stacks = stacks
        self.integrator = LayerIntegrator(
            len(sources), stacks[0].hidden_size, stacks[0].num_layers, integrate_layers, alpha, beta
        )

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None,
                return_sources: bool = False):  # fmt: skip
        """h_final [B, T, d] (Eq. 6); with `return_sources`, also the per-source final refined states.

        No torch.no_grad() below the first integrated block: nothing there requires grad (frozen
        weights, integer inputs), so autograd records no graph there anyway; above it the frozen
        blocks must stay differentiable so dL/dW^(l) reaches the lower integrated layers.
        """
        embedded = [stack.embed(input_ids, attention_mask, token_type_ids) for stack in self.stacks]
        hidden = [h for h, _ in embedded]
        for index in range(self.integrator.num_layers):
            hidden = [stack.layer(index, h, state) for stack, h, (_, state) in zip(self.stacks, hidden, embedded)]
            hidden = self.integrator.refine(index, hidden)
        h_final = self.integrator.combine(hidden)
        return (h_final, hidden) if return_sources else h_final
