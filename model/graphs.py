"""Modality graphs and their graph convolution network (Eq. 8-10).

Graphs are built over the rows ``[CLS ; nodes]`` of a modality; the [CLS] row is an isolated
node (self-loop only) that stands in for the modality when it has no real node.

- text: the dependency adjacency of the batch (``text_adj``), symmetric 0/1.
- video (Eq. 8): ``delta_v[i, j] = sigma_ij`` where the cosine similarity of two frame nodes
  exceeds ``eta``, else 0.
- audio: the line graph of the segments in sequence order (i -- i+1).
- GCN (Eq. 9-10): ``G^k = ReLU(delta~ G^(k-1) W^k + b^k)``, M_gcn layers with their own
  weights per modality; ``delta~ = D^-1/2 delta D^-1/2`` as Eq. 10 writes it
  (``graph_self_loops`` false: a node without edges gets ``ReLU(b)``) or
  ``D^-1/2 (delta + I) D^-1/2`` with Kipf and Welling's self-loops (true, hcm).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hcm.core.registry import Registry
from hcm.model.layers import ModalRows

GraphBuilder = Callable[[ModalRows, "Tensor | None", float], Tensor]
GRAPH_BUILDERS: Registry[GraphBuilder] = Registry("graph builder")  # modality -> adjacency builder
register_graph = GRAPH_BUILDERS.register


def _pair_mask(node_mask: Tensor) -> Tensor:
    """(B, N) -> (B, N, N) True where both ends are real nodes and i != j."""
    pair = node_mask.unsqueeze(2) & node_mask.unsqueeze(1)
    eye = torch.eye(node_mask.shape[1], dtype=torch.bool, device=node_mask.device)
    return pair & ~eye


def _node_mask(rows: ModalRows) -> Tensor:
    """Real nodes among ``[CLS ; nodes]``: valid rows except the [CLS] at 0, (B, 1+N)."""
    mask = rows.valid.clone()
    mask[:, 0] = False
    return mask


@register_graph("text")
def text_graph(rows: ModalRows, text_adj: Tensor | None, eta: float) -> Tensor:
    """Dependency edges (B, N_t, N_t) placed under the [CLS] row -> (B, 1+N_t, 1+N_t)."""
    b, n = rows.valid.shape
    adj = rows.x.new_zeros(b, n, n)
    if text_adj is not None and n > 1:
        adj[:, 1:, 1:] = text_adj.to(adj.dtype)
    return adj * _pair_mask(_node_mask(rows))


@register_graph("video")
def video_graph(rows: ModalRows, text_adj: Tensor | None, eta: float) -> Tensor:
    """Eq. 8: cosine similarity of frame nodes kept where it exceeds eta, (B, 1+N_v, 1+N_v)."""
    unit = F.normalize(rows.x, dim=-1)
    sigma = unit @ unit.transpose(1, 2)  # (B, 1+N, 1+N)
    keep = (sigma > eta) & _pair_mask(_node_mask(rows))
    return sigma * keep


@register_graph("audio")
def audio_graph(rows: ModalRows, text_adj: Tensor | None, eta: float) -> Tensor:
    """Line graph over consecutive real segments, (B, 1+N_a, 1+N_a)."""
    nodes = _node_mask(rows)
    link = nodes[:, :-1] & nodes[:, 1:]  # (B, N) segment i -- i+1
    chain = torch.diag_embed(link.to(rows.x.dtype), offset=1)  # (B, 1+N, 1+N)
    return chain + chain.transpose(1, 2)


def normalized_adjacency(adj: Tensor, valid: Tensor, self_loops: bool = True) -> Tensor:
    """Eq. 10: D^-1/2 delta D^-1/2, or with self-loops on the valid rows D^-1/2 (delta + I) D^-1/2, (B, N, N).

    A row without edges (degree 0) is all zero.
    """
    full = adj + torch.diag_embed(valid.to(adj.dtype)) if self_loops else adj
    degree = full.sum(dim=-1)  # (B, N)
    inv_sqrt = degree.clamp_min(1e-12).rsqrt() * (degree > 0)
    return inv_sqrt.unsqueeze(-1) * full * inv_sqrt.unsqueeze(-2)


class GraphConvolution(nn.Module):
    """Eq. 9: M_gcn layers of ``ReLU(delta~ G W + b)`` for one modality."""

    def __init__(self, d_model: int, layers: int, dropout: float, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, norm_adj: Tensor, valid: Tensor) -> Tensor:
        """x (B, N, d), norm_adj (B, N, N), valid (B, N) -> (B, N, d), padded rows zero."""
        keep = valid.unsqueeze(-1)
        skip = x
        for layer in self.layers:
            x = F.linear(self.drop(x), layer.weight)  # (B, N, d): G W
            x = torch.relu(norm_adj @ x + layer.bias) * keep  # (B, N, d)
        return skip + x if self.residual else x


class ModalityGraphs(nn.Module):
    """Build each modality's graph and run its GCN (Eq. 8-10)."""

    def __init__(self, modalities: tuple[str, ...], d_model: int, layers: int, eta: float,
                 dropout: float, residual: bool = False, self_loops: bool = True) -> None:
        super().__init__()
        self.eta, self.self_loops = eta, self_loops
        self.gcn = nn.ModuleDict({m: GraphConvolution(d_model, layers, dropout, residual) for m in modalities})

    def forward(self, rows: dict[str, ModalRows], text_adj: Tensor | None) -> dict[str, ModalRows]:
        """Return G_m for every modality that has a GCN; others pass through unchanged."""
        out = dict(rows)
        for name, gcn in self.gcn.items():
            seq = rows[name]
            adj = GRAPH_BUILDERS.get(name)(seq, text_adj, self.eta)
            norm_adj = normalized_adjacency(adj, seq.valid, self.self_loops)
            out[name] = seq.with_x(gcn(seq.x, norm_adj, seq.valid))
        return out
