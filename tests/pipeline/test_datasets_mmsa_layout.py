"""CMU-MOSI, CH-SIMS and CH-SIMS v2 in the MMSA layout: their facts, label checks, split sizes
against the published ones, language choices, and their sample corpora read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from hcm.pipeline.datasets import AnnotationError, get_dataset
from hcm.pipeline.datasets.base import INVALID_LABEL
from hcm.pipeline.datasets.language import text_choices
from hcm.pipeline.encoders.graph import CHAIN
from hcm.pipeline.sample import make_sample
from hcm.pipeline.weights import WeightOptions
from hcm.training.settings import load_dataset_facts

HEADER = "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"


def corpus(root: Path, rows: list[str], header: str = HEADER) -> Path:
    (root / "Raw").mkdir(parents=True)
    (root / "label.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("name, low, high, metrics", [
    ("mosi", -3.0, 3.0, ""), ("sims", -1.0, 1.0, "sims"), ("simsv2", -1.0, 1.0, "sims"),
])
def test_facts_of_each_dataset(name, low, high, metrics):
    facts = load_dataset_facts(name)
    assert facts.task == "regression" and facts.label_range == (low, high) and facts.metrics == metrics
    assert facts.streams["video"] == ("efficientnet", "clip_image")
    assert get_dataset(name).label_range == (low, high)


def test_labels_outside_the_range_or_not_numbers_are_rejected_by_line(tmp_path):
    rows = ["v1,0001,好,0.4,,,,Positive,train", "v1,0002,差,-1.6,,,,Negative,train",
            "v2,0001,嗯,happy,,,,Neutral,valid", "v3,0001,对,1.0,,,,Positive,test"]
    items = get_dataset("sims").utterances(corpus(tmp_path, rows), rejected=True)
    bad = {u.id: u.dropped for u in items if u.dropped}
    assert bad["v1$_$0002"][0] == INVALID_LABEL and "line 3" in bad["v1$_$0002"][1]
    assert "outside CH-SIMS's range [-1, 1]" in bad["v1$_$0002"][1]
    assert "not a number" in bad["v2$_$0001"][1] and "--dataset custom" in bad["v2$_$0001"][1]
    kept = [u for u in items if not u.dropped]
    assert [u.id for u in kept] == ["v1$_$0001", "v3$_$0001"]  # ids keep their leading zeros
    assert kept[0].labels["annotation"] == "Positive" and kept[0].labels["label_T"] is None


def test_split_sizes_unlike_the_published_ones_are_reported_with_both_numbers(tmp_path):
    rows = [f"v{k},1,text,0.5,,,,Positive,{split}" for k, split in enumerate(["train", "train", "valid", "test"])]
    adapter = get_dataset("mosi")
    adapter.utterances(corpus(tmp_path, rows))
    (line,) = adapter.report()
    assert "train 2 (published 1284)" in line and "valid 1 (published 229)" in line and "test 1 (published 686)" in line


def test_a_label_file_in_which_nothing_fits_is_refused(tmp_path):
    rows = [f"v{k},1,text,{label},,,,x,train" for k, label in enumerate(["happy", "sad", "angry"])]
    with pytest.raises(AnnotationError, match="none of its 3 rows is a CMU-MOSI clip") as error:
        get_dataset("mosi").utterances(corpus(tmp_path, rows))
    assert "invalid label 3" in str(error.value) and "--dataset custom" in str(error.value)


def test_a_label_file_without_mode_points_to_the_ways_out(tmp_path):
    root = corpus(tmp_path, ["v1,1,text,0.5"], header="video_id,clip_id,text,label")
    with pytest.raises(AnnotationError, match="no `mode` column.*--split-file.*--dataset custom"):
        get_dataset("simsv2").utterances(root)


def test_chinese_datasets_choose_their_text_model_and_parser(monkeypatch):
    sims = get_dataset("sims")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # no zh_core_web_sm here
    spacy_model, weights, warnings = text_choices(sims, None, None, tiny=False)
    assert spacy_model == CHAIN and "zh_core_web_sm" in warnings[0]
    assert weights.given_name("roberta") == "xlm-roberta-large"
    _, weights, _ = text_choices(sims, "zh_core_web_trf", WeightOptions(paths={"roberta": "/models/zh"}), tiny=False)
    assert weights.given_name("roberta") == "/models/zh"
    assert text_choices(get_dataset("mosi"), None, None, tiny=False) == (None, None, [])


@pytest.mark.parametrize("name", ["mosi", "sims", "simsv2"])
def test_the_sample_corpus_reads_with_its_dataset(name, tmp_path):
    summary = make_sample(name, tmp_path / name, n=12, seed=2, faults=True, progress=False)
    adapter = get_dataset(name)
    items = adapter.utterances(summary.root, rejected=True)
    assert len(items) == 12 and not any(u.dropped for u in items)
    low, high = adapter.label_range
    assert all(low <= u.label <= high for u in items)
    assert {u.split for u in items} == {"train", "valid", "test"}
    assert sum(1 for u in items if not u.text) == 1  # the empty-transcript fault
    if name != "mosi":
        assert any("\u4e00" <= ch <= "\u9fff" for u in items for ch in u.text)
