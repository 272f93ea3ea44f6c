"""CLIP text tokenizer: text cleaning + byte-level BPE -> fixed-length (B, 77) token rows.

hcm tokenises utterances for the CLIP text tower (``clip_text`` stream). The BPE itself runs in
Hugging Face ``transformers``' :class:`~transformers.CLIPTokenizer` (a ``tokenizers`` backend);
hcm builds it from either CLIP's merges file (``bpe_simple_vocab_16e6.txt.gz``) or a weights
folder with ``vocab.json`` + ``merges.txt``, and adds CLIP's own conventions around it:

* cleaning: ``ftfy.fix_text``, HTML unescaping twice, whitespace collapse, lower case;
* rows ``[<|startoftext|>] + tokens + [<|endoftext|>]`` zero-padded to the context length;
* over-long text is truncated keeping the end-of-text token (the end-of-text position is
  where the text tower reads its embedding). The original CLIP tokenizer raised instead.

:meth:`ClipTokenizer.tiny` builds a file-free byte-level tokenizer (no merges, 514 ids) with
the same output format for the ``tiny`` profile and tests.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
from pathlib import Path
from typing import Sequence

import ftfy
import regex
import torch
from transformers import CLIPTokenizer

logger = logging.getLogger(__name__)

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
CLIP_VOCAB_SIZE = 49408
CLIP_NUM_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2  # 48,894 merges used by CLIP
TINY_VOCAB_SIZE = 2 * 256 + 2
CONTEXT_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character table of byte-level BPE (GPT-2 / CLIP order).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to 256, 257, ... in
    byte order. The order of the values is the order of the first 256 vocabulary entries.
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + i) for i, b in enumerate(others)})
    return table


def clean_text(text: str) -> str:
    """CLIP's text cleaning: fix mojibake, unescape HTML twice, collapse whitespace, lower-case."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def _byte_vocab() -> list[str]:
    symbols = list(bytes_to_unicode().values())
    return symbols + [s + "</w>" for s in symbols]


def read_bpe_merges(path: str | Path, num_merges: int = CLIP_NUM_MERGES) -> list[tuple[str, str]]:
    """Merges of a ``bpe_simple_vocab_16e6.txt.gz``-format file (header line skipped)."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, EOFError) as error:
        raise ValueError(f"{path} is not a gzip-compressed CLIP BPE merges file: {error}") from error
    merges = [tuple(line.split()) for line in lines[1:num_merges + 1]]
    if len(merges) != num_merges or any(len(m) != 2 for m in merges):
        raise ValueError(
            f"{path} holds {len(merges)} well-formed merges where {num_merges} were expected; "
            "is it CLIP's bpe_simple_vocab_16e6.txt.gz?"
        )
    return merges


class ClipTokenizer:
    """Callable: list of strings -> (B, context_length) int64 token rows for :class:`CLIP`."""

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                 context_length: int = CONTEXT_LENGTH) -> None:
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}")
        self.context_length = context_length
        self._backend = CLIPTokenizer(vocab=vocab, merges=list(merges))
        self.vocab_size = len(self._backend)
        if self.vocab_size != len(vocab):
            raise RuntimeError(
                f"transformers' CLIPTokenizer holds {self.vocab_size} ids for a {len(vocab)}-entry "
                "vocabulary; the installed transformers version ignored the vocabulary passed in"
            )
        self.start_id = self._backend.convert_tokens_to_ids(START_TOKEN)
        self.end_id = self._backend.convert_tokens_to_ids(END_TOKEN)

    @classmethod
    def from_bpe_file(cls, path: str | Path, context_length: int = CONTEXT_LENGTH) -> "ClipTokenizer":
        """CLIP's tokenizer from ``bpe_simple_vocab_16e6.txt.gz`` (49,408 ids)."""
        merges = read_bpe_merges(path)
        tokens = _byte_vocab() + ["".join(m) for m in merges] + [START_TOKEN, END_TOKEN]
        vocab = {token: i for i, token in enumerate(tokens)}
        if len(vocab) != CLIP_VOCAB_SIZE:
            raise ValueError(f"{path} gives {len(vocab)} distinct tokens, expected {CLIP_VOCAB_SIZE}")
        return cls(vocab, merges, context_length)

    @classmethod
    def from_directory(cls, folder: str | Path, context_length: int = CONTEXT_LENGTH) -> "ClipTokenizer":
        """CLIP's tokenizer from a folder with ``vocab.json`` and ``merges.txt`` (Hugging Face layout)."""
        folder = Path(folder)
        vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
        for path in (vocab_path, merges_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found; a CLIP tokenizer folder needs vocab.json and merges.txt"
                )
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        lines = merges_path.read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        if len(vocab) != CLIP_VOCAB_SIZE:
            raise ValueError(f"{vocab_path} holds {len(vocab)} tokens, expected CLIP's {CLIP_VOCAB_SIZE}")
        return cls(vocab, merges, context_length)

    @classmethod
    def tiny(cls, context_length: int = CONTEXT_LENGTH) -> "ClipTokenizer":
        """Byte-level tokenizer without merges: 512 byte symbols + 2 specials = 514 ids, no files."""
        tokens = _byte_vocab() + [START_TOKEN, END_TOKEN]
        return cls({token: i for i, token in enumerate(tokens)}, [], context_length)

    def encode(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without special tokens."""
        return self._backend(clean_text(text), add_special_tokens=False)["input_ids"]

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token rows (B, context_length) int64: start, tokens, end, zero padding."""
        if isinstance(texts, str):
            texts = [texts]
        rows = torch.zeros(len(texts), self.context_length, dtype=torch.long)  # (B, L)
        room = self.context_length - 2
        for i, text in enumerate(texts):
            ids = self.encode(text)
            if len(ids) > room:
                logger.debug("CLIP text of %d tokens truncated to %d: %.60r", len(ids), room, text)
                ids = ids[:room]
            row = [self.start_id] + ids + [self.end_id]
            rows[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return rows

    def is_truncated(self, text: str) -> bool:
        """Whether ``text`` is longer than a row can hold (callers may record this)."""
        return len(self.encode(text)) > self.context_length - 2
