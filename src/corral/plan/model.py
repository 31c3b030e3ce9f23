"""Transformer architectures the planner knows: dense decoders and mixtures of experts.

Parameter counts are exact for the presets (each is checked against its published size in
the tests), because every later number (FLOPs, memory, days) is proportional to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.config import build, read_mapping
from corral.errors import InputError


@dataclass(frozen=True)
class Transformer:
    """A decoder-only transformer. `experts` > 1 makes every layer's MLP a mixture of experts
    with `active_experts` routed per token (plus `shared_experts` always on)."""

    name: str
    layers: int
    d_model: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    swiglu: bool = True
    tied_embeddings: bool = False
    causal: bool = True
    experts: int = 1
    active_experts: int = 1
    shared_experts: int = 0
    expert_ffn: int | None = None

    def __post_init__(self) -> None:
        for name in ("layers", "d_model", "ffn", "heads", "kv_heads", "vocab", "experts", "active_experts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a whole number >= 1", source=self.name, field=name)
        if self.d_model % self.heads:
            raise InputError(
                f"d_model {self.d_model} is not a multiple of heads {self.heads}",
                source=self.name,
                field="heads",
            )
        if self.heads % self.kv_heads:
            raise InputError(
                f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}",
                source=self.name,
                field="kv_heads",
            )
        if self.active_experts > self.experts:
            raise InputError(
                f"active_experts {self.active_experts} exceeds experts {self.experts}",
                source=self.name,
                field="active_experts",
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def moe_ffn(self) -> int:
        return self.expert_ffn or self.ffn

    def _mlp_params(self, ffn: int) -> int:
        return (3 if self.swiglu else 2) * self.d_model * ffn

    @property
    def attention_params(self) -> int:
        """Q and output projections are d x d; K and V shrink with grouped-query attention."""
        kv_dim = self.kv_heads * self.head_dim
        return 2 * self.d_model * self.d_model + 2 * self.d_model * kv_dim

    @property
    def expert_params(self) -> int:
        """One routed expert's MLP (0 for a dense model)."""
        return self._mlp_params(self.moe_ffn) if self.is_moe else 0

    @property
    def mlp_params(self) -> int:
        """All MLP weights of one layer: the dense MLP, or every expert, shared ones and the router."""
        if not self.is_moe:
            return self._mlp_params(self.ffn)
        return (self.experts + self.shared_experts) * self.expert_params + self.d_model * self.experts

    @property
    def active_mlp_params(self) -> int:
        """MLP weights one token passes through."""
        if not self.is_moe:
            return self.mlp_params
        routed = (self.active_experts + self.shared_experts) * self.expert_params
        return routed + self.d_model * self.experts

    @property
    def layer_params(self) -> int:
        return self.attention_params + self.mlp_params + 2 * self.d_model  # two RMSNorm gains

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.d_model

    @property
    def head_params(self) -> int:
        """The output projection to the vocabulary (shared with the embedding when tied)."""
        return self.vocab * self.d_model

    @property
    def total_params(self) -> int:
        head = 0 if self.tied_embeddings else self.head_params
        return self.layers * self.layer_params + self.embedding_params + head + self.d_model

    @property
    def active_params(self) -> int:
        """Parameters used per token: total less the experts a token is not routed to."""
        idle = self.layers * (self.mlp_params - self.active_mlp_params)
        return self.total_params - idle

    @property
    def matmul_params_per_token(self) -> int:
        """Weights that take part in a matrix multiply per token: the layers' active weights
        and the output head. The embedding is a lookup, and norms are elementwise."""
        return self.layers * (self.attention_params + self.active_mlp_params) + self.head_params


PRESETS: dict[str, Transformer] = {
    # Llama 3 paper, Table 3; vocabulary 128,256 from the released configs (the paper says "128K").
    "llama3-8b": Transformer("llama3-8b", 32, 4096, 14336, 32, 8, 128256),
    "llama3-70b": Transformer("llama3-70b", 80, 8192, 28672, 64, 8, 128256),
    "llama3-405b": Transformer("llama3-405b", 126, 16384, 53248, 128, 8, 128256),
    # Mixtral 8x7B (Jiang et al. 2024): 8 experts, 2 per token; 46.7B total, 12.9B active.
    "mixtral-8x7b": Transformer("mixtral-8x7b", 32, 4096, 14336, 32, 8, 32000, experts=8, active_experts=2),
}


def load_model(spec: str) -> Transformer:
    """A preset name, or a TOML/JSON file whose keys are the Transformer's fields."""
    key = spec.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    path = Path(spec)
    if not path.exists():
        raise InputError(
            f"unknown model '{spec}'; presets: {', '.join(sorted(PRESETS))}, or a TOML/JSON file",
            field="model",
        )
    data = read_mapping(path, "model")
    data.setdefault("name", path.stem)
    return build(Transformer, data, str(path))
