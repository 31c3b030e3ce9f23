"""FLOPs per token of a decoder transformer, as MFU is counted in the literature.

Model FLOPs per token for training are 6 N (N: the weights a token multiplies, counting
only the experts it is routed to) plus attention, 12 L H Q T for head dimension Q and
sequence length T (PaLM, appendix B; torchtitan). That attention term counts the full score
matrix even for a causal model, as the literature does; `causal_accounting` halves it for
those who count only the unmasked half. Hardware FLOPs add recomputation; model FLOPs never
do (MFU versus HFU, Chowdhery et al. 2022).
"""

from __future__ import annotations

from corral.plan.model import Transformer


def attention_flops_per_token(model: Transformer, seq: int, causal_accounting: bool = False) -> float:
    """Forward and backward score and value matmuls for one token: 12 L H Q T."""
    full = 12.0 * model.layers * model.heads * model.head_dim * seq
    return full / 2 if causal_accounting else full


def training_flops_per_token(model: Transformer, seq: int, causal_accounting: bool = False) -> float:
    """Model FLOPs of one token's forward and backward pass: 6 N + attention."""
    return 6.0 * model.matmul_params_per_token + attention_flops_per_token(model, seq, causal_accounting)


def recompute_flops_per_token(model: Transformer, seq: int, recompute: str) -> float:
    """What recomputation adds in hardware FLOPs per token: the attention core's forward for
    selective, the whole forward of the layers for full."""
    attention_fwd = attention_flops_per_token(model, seq) / 3
    if model.causal:
        attention_fwd /= 2
    if recompute == "selective":
        return attention_fwd
    if recompute == "full":
        return 2.0 * (model.matmul_params_per_token - model.head_params) + attention_fwd
    return 0.0
