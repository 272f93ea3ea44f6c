"""``hcm sample`` writes as it goes: each utterance is drawn just before it is written (a large
``--n`` starts at once and holds one item in memory), an interrupted sample is marked partial and
replaced by the next run, and the corpora stay byte-identical to the ones benchmarks measured."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import hcm.pipeline.sample  # noqa: F401  (registers every corpus)
from hcm.apps.sample import INTERRUPTED, sample_command
from hcm.core.workspace import Workspace
from hcm.pipeline.sample import iemocap, meld, mmsa_corpora, mosei
from hcm.pipeline.sample.common import corpus_rng
from hcm.pipeline.sample.media import ClipWriter
from hcm.pipeline.sample.registry import MARKER, PARTIAL, get_sample, make_sample

CLIP_CORPORA = {"mosei": mosei, "meld": meld, "mosi": mmsa_corpora, "sims": mmsa_corpora,
                "simsv2": mmsa_corpora, "custom": mmsa_corpora}


class Ledger:
    """Counts the utterances drawn (``make_content`` calls) and notes that count at each media write."""

    def __init__(self) -> None:
        self.drawn = 0
        self.at_write: list[int] = []

    def counting(self, make_content):
        def draw(*args, **kwargs):
            self.drawn += 1
            return make_content(*args, **kwargs)
        return draw

    def write(self, *_args, **_kwargs) -> None:
        self.at_write.append(self.drawn)


@pytest.mark.parametrize("name", sorted(CLIP_CORPORA))
def test_each_clip_is_drawn_just_before_it_is_written(name, tmp_path, monkeypatch):
    ledger = Ledger()
    module = CLIP_CORPORA[name]
    monkeypatch.setattr(module, "make_content", ledger.counting(module.make_content))
    monkeypatch.setattr(ClipWriter, "__call__", ledger.write)
    make_sample(name, tmp_path / name, n=40, seed=1, progress=False)
    # Planning everything first would show 40 utterances drawn at the first write.
    assert ledger.at_write == list(range(1, 41))


def test_each_iemocap_dialogue_is_drawn_just_before_it_is_written(tmp_path, monkeypatch):
    ledger = Ledger()
    monkeypatch.setattr(iemocap, "make_content", ledger.counting(iemocap.make_content))
    monkeypatch.setattr(iemocap.DialogueWriter, "__call__", ledger.write)
    summary = make_sample("iemocap", tmp_path / "iemocap", n=80, seed=1, progress=False)
    dialogues = list(iemocap._plan_dialogues(80, corpus_rng(1, "iemocap")))
    turns_so_far = [sum(len(d.turns) for d in dialogues[:k + 1]) for k in range(len(dialogues))]
    assert len(dialogues) == 10 and ledger.at_write == turns_so_far
    assert summary.counts == {f"Session{s}": sum(len(d.turns) for d in dialogues if d.session == s)
                              for s in range(1, 6)}


def test_a_large_iemocap_gets_more_dialogues_not_longer_ones():
    dialogues = list(iemocap._plan_dialogues(1000, corpus_rng(0, "iemocap")))
    lengths = [len(d.turns) for d in dialogues]
    assert len(dialogues) == 5 * 4 and sum(lengths) == 1000
    assert max(lengths) <= 80  # about TURNS_PER_DIALOGUE; two dialogues a session would hold about 100
    assert len({d.name for d in dialogues}) == len(dialogues)


class Interrupt:
    """A media write that presses Ctrl-C at the ``at``-th clip, once."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, *_args, **_kwargs) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_sample_keeps_what_it_wrote_and_is_replaced_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setattr(ClipWriter, "__call__", Interrupt(at=5))
    root = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        make_sample("mosei", root, n=30, seed=0, progress=False)
    assert (root / PARTIAL).is_file() and not (root / MARKER).exists()
    assert len((root / "label.csv").read_text().splitlines()) == 1 + 5  # the header, and the rows so far
    summary = make_sample("mosei", root, n=30, seed=0, progress=False)
    assert summary.total == 30 and (root / MARKER).is_file() and not (root / PARTIAL).exists()
    assert len((root / "label.csv").read_text().splitlines()) == 1 + 30


def test_hcm_sample_says_how_to_go_on_after_ctrl_c(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ClipWriter, "__call__", Interrupt(at=2))
    status = sample_command(Workspace(tmp_path / "ws"), "mosi", tmp_path / "corpus", n=10, quiet=True)
    assert status == 130 and capsys.readouterr().err.strip() == INTERRUPTED
    assert "run the same command again" in INTERRUPTED


# sha256 over the annotation files (path -> sha256, as sorted JSON) of each corpus at its default size
# with --faults and seed 3, written by hcm before items were drawn lazily: the corpora RESULTS.md measured.
ANNOTATIONS = {
    "custom": "88d22994125f0e78", "iemocap": "d4130a720b88fe46", "meld": "59163d316a5fadc6",
    "mosei": "d9a307ce997e07f8", "mosi": "fa280491acc51c83", "sims": "e81627ab6f3d9c83",
    "simsv2": "6277d32338200f34",
}


@pytest.mark.parametrize("name", sorted(ANNOTATIONS))
def test_annotation_files_are_the_ones_benchmarks_measured(name, tmp_path, monkeypatch):
    monkeypatch.setattr(ClipWriter, "__call__", lambda *_: None)
    monkeypatch.setattr(iemocap.DialogueWriter, "__call__", lambda *_: None)
    root = tmp_path / name
    make_sample(name, root, n=get_sample(name).default_n, seed=3, faults=True, progress=False)
    files = {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted(root.rglob("*")) if path.suffix in (".csv", ".txt")}
    assert hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16] == ANNOTATIONS[name]


def test_every_registered_corpus_has_a_pinned_annotation_digest():
    from hcm.pipeline.sample import available_samples

    assert set(available_samples()) == set(ANNOTATIONS)


def test_the_partial_marker_names_the_request(tmp_path, monkeypatch):
    monkeypatch.setattr(ClipWriter, "__call__", Interrupt(at=1))
    with pytest.raises(KeyboardInterrupt):
        make_sample("custom", tmp_path / "c", n=12, seed=4, faults=False, progress=False)
    assert json.loads((tmp_path / "c" / PARTIAL).read_text()) == {"dataset": "custom", "n": 12, "seed": 4,
                                                                 "faults": False}
    assert Path(tmp_path / "c" / "label.csv").read_text().startswith("video_id,clip_id,text,label\n")
