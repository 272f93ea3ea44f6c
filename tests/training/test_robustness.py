"""hcm.training.robustness: masking as extraction masks, noise scaled to each column's spread, the sets
that --missing names."""

from __future__ import annotations

import pytest
import torch

from hcm.training.robustness import Condition, add_noise, column_spread, conditions_for, mask_modalities, missing_sets

MODS = ("text", "video", "audio")


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, dim in (("text", 4), ("video", 3), ("audio", 2)):
        out[name] = torch.randn(6, 5, dim, generator=gen) * torch.tensor([1.0, 10.0, 0.1, 3.0][:dim])
        out[f"{name}_mask"] = torch.arange(5)[None] < torch.tensor([5, 4, 3, 2, 1, 5])[:, None]
    out["text_adj"] = torch.ones(6, 5, 5)
    return out


def test_a_masked_modality_looks_like_a_missing_medium() -> None:
    original = batch()
    masked = mask_modalities(original, ["text", "audio"])
    for name in ("text", "audio"):
        assert not masked[f"{name}_mask"].any() and not masked[name].any()
    assert not masked["text_adj"].any()
    assert torch.equal(masked["video"], original["video"]) and original["text_mask"].any()  # copy, not in place


def test_noise_is_scaled_to_each_columns_spread_and_only_on_real_rows() -> None:
    batches = [batch(seed) for seed in range(30)]
    spread = column_spread(batches, MODS)
    assert spread["text"].shape == (4,)
    assert torch.allclose(spread["text"], torch.tensor([1.0, 10.0, 0.1, 3.0]), rtol=0.1)
    clean = batches[0]
    noisy = add_noise(clean, spread, 0.5, torch.Generator().manual_seed(0))
    diff = noisy["text"] - clean["text"]
    assert not diff[~clean["text_mask"]].any()  # padded rows untouched
    real = torch.cat([add_noise(b, spread, 0.5, torch.Generator().manual_seed(k))["text"][b["text_mask"]]
                      - b["text"][b["text_mask"]] for k, b in enumerate(batches)])
    assert torch.allclose(real.std(0), 0.5 * spread["text"], rtol=0.15)


@pytest.mark.parametrize("spec,expected", [
    (["all"], [("text",), ("video",), ("audio",), ("text", "video"), ("text", "audio"), ("video", "audio")]),
    (["audio+video", "text"], [("video", "audio"), ("text",)]),
])
def test_missing_sets(spec: list[str], expected: list[tuple[str, ...]]) -> None:
    assert missing_sets(spec, MODS) == expected


@pytest.mark.parametrize("spec,words", [(["text+video+audio"], "masks every modality"),
                                        (["video"], "uses the modalities ['text', 'audio']")])
def test_missing_sets_refuse_what_the_run_cannot_take(spec: list[str], words: str) -> None:
    modalities = ("text", "audio") if spec == ["video"] else MODS
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        missing_sets(spec, modalities)


def test_conditions_start_clean_and_name_themselves() -> None:
    names = [c.name for c in conditions_for([("video", "audio")], [0.0, 0.5])]
    assert names == ["clean", "missing video+audio", "noise 0.5"]
    assert Condition(("text",), 1.0).name == "missing text, noise 1"
