"""Look inside one HCMNet forward pass without changing it (``hcm explain``, the paper's Figure 5).

:func:`record_details` registers forward hooks on a built :class:`hcm.model.hcmnet.HCMNet` that
only read what flows through it, and fills a :class:`ForwardDetails`:

- Eq. 11: every transport plan ``H_m`` (B, 1+N_m, 1+N_t) and the marginals it was solved for
  (uniform over each graph's support, ``hcm.model.layers.support_weights``); rows of ``H_m`` sum
  to ``mu_m``, columns to ``mu_t``.
- Eq. 8 and the other graphs: the adjacency each modality's GCN was given (before Eq. 10's
  normalisation): the dependency graph over the text rows, the video graph (cosine similarity
  kept above ``eta``, also stored whole as ``similarity``), the audio line graph.
- Eq. 4: the attention weights of dynamic attention reasoning, each non-anchor modality's rows
  (queries) over the anchor's rows (keys), per head; the ``lambda alpha_t (beta_v + beta_a)``
  term is added after the weights and does not change them.

The hooks return nothing, so the outputs are bit-for-bit those of a forward pass without them;
they are removed when the ``with`` block ends. Parts a variant does not build record nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from hcm.model.graphs import GRAPH_BUILDERS
from hcm.model.layers import MaskedAttention, masked_softmax, support_weights


@dataclass
class ForwardDetails:
    """What one recorded forward pass computed; every tensor is detached, on the model's device."""

    plans: dict[str, Tensor] = field(default_factory=dict)  # m -> H_m (B, 1+N_m, 1+N_t)
    marginals: dict[str, Tensor] = field(default_factory=dict)  # m (anchor too) -> mu (B, 1+N_m)
    adjacency: dict[str, Tensor] = field(default_factory=dict)  # m -> graph (B, 1+N_m, 1+N_m), [CLS] at 0
    similarity: Tensor | None = None  # video cosine similarity sigma (B, 1+N_v, 1+N_v)
    eta: float | None = None  # the video graph's threshold
    attention: dict[str, Tensor] = field(default_factory=dict)  # m -> (B, heads, 1+N_m, 1+N_anchor)
    anchor: str = "text"


def attention_weights(attention: MaskedAttention, query: Tensor, key: Tensor, key_mask: Tensor) -> Tensor:
    """The softmax weights ``MaskedAttention`` applies: (B, Nq, dq), (B, Nk, dq), (B, Nk) -> (B, h, Nq, Nk)."""
    q, k = attention._split(attention.q(query)), attention._split(attention.k(key))  # (B, h, n, d/h)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, h, Nq, Nk), SDPA's default scale
    return masked_softmax(scores, key_mask[:, None, None, :])


@contextmanager
def record_details(model: nn.Module) -> Iterator[ForwardDetails]:
    """Record plans, marginals, graphs and attention of the forward passes run inside the block."""
    details = ForwardDetails(anchor=getattr(model, "anchor", "text"))
    handles = []

    def on_graphs(module: nn.Module, args: tuple) -> None:
        rows, text_adj = args
        details.eta = float(module.eta)
        for name in module.gcn:
            details.adjacency[name] = GRAPH_BUILDERS.get(name)(rows[name], text_adj, module.eta).detach()
            if name == "video":
                unit = F.normalize(rows[name].x, dim=-1)
                details.similarity = (unit @ unit.transpose(1, 2)).detach()  # (B, 1+N_v, 1+N_v)

    def on_transport(module: nn.Module, args: tuple, output) -> None:
        graphs, anchor = args if len(args) == 2 else (args[0], details.anchor)
        details.marginals[anchor] = support_weights(graphs[anchor].support).detach()
        for name, plan in output.plans.items():
            details.marginals[name] = support_weights(graphs[name].support).detach()
            details.plans[name] = plan.detach()

    def on_attention(name: str):
        def hook(module: MaskedAttention, args: tuple) -> None:
            query, key, _, key_mask = args[:4]
            details.attention[name] = attention_weights(module, query, key, key_mask).detach()
        return hook

    if getattr(model, "graphs", None) is not None:
        handles.append(model.graphs.register_forward_pre_hook(on_graphs))
    if getattr(model, "transport", None) is not None:
        handles.append(model.transport.register_forward_hook(on_transport))
    if getattr(model, "reasoning", None) is not None:
        for name, attention in model.reasoning.attend.items():
            handles.append(attention.register_forward_pre_hook(on_attention(name)))
    try:
        yield details
    finally:
        for handle in handles:
            handle.remove()
