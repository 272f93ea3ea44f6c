"""model/nodes.py, the common node count M, on hand-computed cases: which rows are real, the area
weights at their edges (one node, one target, rows past the target count) and where each
resampled node lands (the whole module at work: tests/model/test_readings.py)."""

from __future__ import annotations

import torch

from hcm.model.layers import ModalRows
from hcm.model.nodes import area_weights, real_first, to_anchor_nodes


def rows(values: list[float], valid: list[bool]) -> ModalRows:
    """One sample of width-1 rows, [CLS] first (``valid[0]`` is the [CLS] row)."""
    valid_t = torch.tensor([valid])
    support = valid_t.clone()
    support[:, 0] = False
    present = support.any(1)
    if not present.item():
        support[:, 0] = True  # without nodes, [CLS] alone is the support
    return ModalRows(torch.tensor([[[v] for v in values]]), valid_t, support, present)


def test_real_first_keeps_the_order_of_the_real_and_of_the_padded_positions() -> None:
    # 300 positions: wide enough that an unstable sort mixes up equal keys
    mask = torch.rand(2, 300, generator=torch.Generator().manual_seed(0)) < 0.5
    order = real_first(mask)
    for b in range(2):
        real = torch.nonzero(mask[b]).squeeze(1)
        padded = torch.nonzero(~mask[b]).squeeze(1)
        assert torch.equal(order[b], torch.cat([real, padded]))


def test_area_weights_are_zero_outside_the_real_targets_and_sources() -> None:
    weights = area_weights(torch.tensor([2]), torch.tensor([1]), 3, 3)  # 2 sources onto 1 target
    assert weights.tolist() == [[[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
    weights = area_weights(torch.tensor([1]), torch.tensor([2]), 2, 3)  # 1 source onto 2 targets
    assert weights.tolist() == [[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]


def test_nothing_is_resampled_from_a_source_without_nodes() -> None:
    assert area_weights(torch.tensor([0]), torch.tensor([2]), 2, 2).abs().sum() == 0


def test_one_target_averages_every_source_node() -> None:
    weights = area_weights(torch.tensor([4]), torch.tensor([1]), 4, 1)
    assert weights.tolist() == [[[0.25, 0.25, 0.25, 0.25]]]


def test_a_single_source_node_is_repeated_on_every_anchor_node() -> None:
    anchor = rows([0.0, 1.0, 1.0, 1.0], [True, True, True, True])
    video = rows([9.0, 5.0, 0.0], [True, True, False])
    moved = to_anchor_nodes(video, anchor)
    assert moved.x.squeeze(-1).tolist() == [[9.0, 5.0, 5.0, 5.0]]
    assert moved.valid.tolist() == [[True, True, True, True]] and moved.present.tolist() == [True]


def test_a_single_anchor_node_gets_the_mean_at_its_own_row() -> None:
    anchor = rows([0.0, 0.0, 0.0, 1.0], [True, False, False, True])  # its one node on row 3
    video = rows([9.0, 1.0, 2.0, 3.0, 6.0], [True, True, True, True, True])
    moved = to_anchor_nodes(video, anchor)
    assert moved.x.squeeze(-1).tolist() == [[9.0, 0.0, 0.0, 3.0]]
    assert moved.valid.tolist() == [[True, False, False, True]]
    assert moved.support.tolist() == [[False, False, False, True]]


def test_without_anchor_nodes_a_modality_keeps_at_most_the_anchor_width() -> None:
    anchor = rows([0.0, 0.0, 0.0], [True, False, False])  # no text nodes, width 2
    video = rows([9.0, 1.0, 3.0, 5.0, 7.0], [True, True, True, True, True])  # 4 nodes onto 2
    moved = to_anchor_nodes(video, anchor)
    assert moved.x.squeeze(-1).tolist() == [[9.0, 2.0, 6.0]]
    assert moved.valid.tolist() == [[True, True, True]] and moved.present.tolist() == [True]
    short = to_anchor_nodes(rows([9.0, 4.0, 0.0], [True, True, False]), rows([0.0] * 4, [True, False, False, False]))
    assert short.x.squeeze(-1).tolist() == [[9.0, 4.0, 0.0, 0.0]]  # 1 node stays 1 node, on row 1
    assert short.valid.tolist() == [[True, True, False, False]]


def test_an_absent_modality_stays_absent_on_the_anchor_nodes() -> None:
    anchor = rows([0.0, 1.0, 1.0], [True, True, True])
    audio = rows([4.0, 0.0], [True, False])
    moved = to_anchor_nodes(audio, anchor)
    assert moved.present.tolist() == [False]
    assert moved.valid.tolist() == [[True, False, False]] and moved.support.tolist() == [[True, False, False]]
    assert moved.x.squeeze(-1).tolist() == [[4.0, 0.0, 0.0]]


def test_resampling_stays_on_the_inputs_device() -> None:
    """Every tensor it makes is on its inputs' device: run on the meta device, where mixing in a CPU
    tensor fails as it would on a GPU."""
    mask = torch.ones(2, 6, dtype=torch.bool, device="meta")
    video = ModalRows(torch.zeros(2, 6, 3, device="meta"), mask, mask, mask[:, 0])
    anchor = ModalRows(torch.zeros(2, 4, 3, device="meta"), mask[:, :4], mask[:, :4], mask[:, 0])
    moved = to_anchor_nodes(video, anchor)
    assert moved.x.device.type == "meta" and moved.x.shape == (2, 4, 3) and moved.valid.shape == (2, 4)
    counts = torch.tensor([2, 3], device="meta")
    assert area_weights(counts, counts, 3, 3).device.type == "meta"
