"""RoBERTa token features of an utterance in its dialogue context, plus its dependency graph.

The text fed to RoBERTa is the current utterance with its 2 former and 2 latter utterances
(the context window of the paper's Feature Extraction section), joined by single spaces.
Streams written per item:

- ``roberta`` (n, H) float16: ``last_hidden_state`` of every token of the window, specials included;
- ``roberta_current`` (n,) uint8: 1 for tokens of the current utterance;
- ``token_word`` (n,) int32: spaCy word index of current tokens, -1 elsewhere;
- ``text_edges`` (E, 2) int32: dependency edges between current tokens (``graph.py`` rule).

A window longer than the model's maximum is cut from the far ends of the context first; if
the current utterance alone is too long its tail is cut. Either is recorded in
``Item.notes["truncated"]``.

The ``tiny`` profile builds a small ``RobertaModel`` and a byte-level BPE tokenizer in code
(trained on a fixed built-in corpus), so it needs no download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch

from hcm.cache.schema import FeatureSpec
from hcm.pipeline.encoders.base import Encoded, Encoder, register_encoder, seeded, to_device, to_float16, weights_id
from hcm.pipeline.encoders.graph import DependencyParser, Word, dependency_edges, make_parser, token_words
from hcm.pipeline.weights import ResolvedWeights, WeightSpec

TINY_VOCAB_SIZE = 1024
TINY_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TINY_CORPUS = (
    "i really liked the movie, it was great and the acting was good.",
    "i don't know what you mean, that's not what i said at all!",
    "honestly this is so bad; i hated every minute of it.",
    "oh my god, are you serious? we won the game tonight.",
    "well, okay. maybe we could talk about it later with them.",
    "the food there is amazing but the service was really slow.",
    "she said he would come back home, but he never did.",
    "thank you so much, this means a lot to me and my family.",
)


@dataclass(frozen=True)
class RobertaSettings:
    """RoBERTa text features.

    Args:
        model: Hugging Face model id or local folder (paper: ``roberta-large``); ``tiny`` builds
            a small random model and in-code tokenizer.
        context: former and latter utterances joined around the current one.
        max_length: most tokens fed to the model, special tokens included.
        hidden_size, layers, heads, intermediate_size: the tiny model's size (ignored otherwise).
    """

    model: str = "roberta-large"
    context: int = 2
    max_length: int = 512
    hidden_size: int = 1024
    layers: int = 24
    heads: int = 16
    intermediate_size: int = 4096

    @property
    def tiny(self) -> bool:
        return self.model == "tiny"


@lru_cache(maxsize=1)
def _tiny_bpe() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """Vocabulary and merges of the tiny byte-level BPE, trained deterministically on TINY_CORPUS
    and on the words of hcm's synthetic corpora.

    A real RoBERTa vocabulary holds common English words as whole tokens; learning the tiny
    one from the sample corpora's lexicon gives the offline demo the same property, so its
    random tiny encoder sees one token (one random embedding) per sentiment word rather than a
    few shared byte pieces.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from hcm.pipeline.sample.content import EMOTION_LEXICON, SENTIMENT_LEXICON

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE, special_tokens=TINY_SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    words = [word for lexicon in (SENTIMENT_LEXICON, EMOTION_LEXICON) for group in lexicon.values()
             for word in group]
    bpe.train_from_iterator(list(TINY_CORPUS) * 4 + [" ".join(words)] * 8, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = tuple(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    return vocab, tuple(tuple(pair) for pair in model["merges"])


def tiny_tokenizer():
    """A RoBERTa fast tokenizer over the in-code vocabulary (no files, no downloads)."""
    from transformers import RobertaTokenizerFast

    vocab, merges = _tiny_bpe()
    tokenizer = RobertaTokenizerFast(vocab=dict(vocab), merges=list(merges))
    if len(tokenizer) != len(vocab):  # transformers must have taken our vocabulary, not a default
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, expected {len(vocab)}")
    return tokenizer


@dataclass
class TextWindow:
    """The tokenised context window of one utterance, ready for RoBERTa."""

    input_ids: np.ndarray  # (n,) int64, with <s> and </s>
    current: np.ndarray  # (n,) uint8
    spans: np.ndarray  # (n, 2) int64 char spans relative to the current utterance; -1 outside it
    current_text: str
    truncated: str = ""


def join_window(utterance: Any, context: int) -> tuple[str, int, str]:
    """The window text, where the current utterance starts in it, and the current text (stripped)."""
    before = [t.strip() for t in utterance.context_before[len(utterance.context_before) - context:]] if context else []
    after = [t.strip() for t in utterance.context_after[:context]] if context else []
    before, after = [t for t in before if t], [t for t in after if t]
    current = (utterance.text or "").strip()
    start = len(" ".join(before)) + (1 if before else 0)
    return " ".join(before + [current] + after), start, current


def _keep_range(n: int, first: int, last: int, budget: int) -> tuple[int, int, str]:
    """Token range ``[a, b)`` of at most ``budget`` tokens around the current ``[first, last)``."""
    if n <= budget:
        return 0, n, ""
    n_current = last - first
    if n_current >= budget:
        return first, first + budget, f"utterance cut from {n_current} to {budget} tokens, context dropped"
    room = budget - n_current
    left, right = first, n - last
    take_left = min(left, room // 2)
    take_right = min(right, room - take_left)
    take_left = min(left, room - take_right)
    note = f"context cut to {take_left}+{take_right} of {left}+{right} tokens"
    return first - take_left, last + take_right, note


def _special_id(tokenizer: Any, roberta_name: str, bert_name: str) -> int:
    """``<s>``/``</s>`` of RoBERTa-type tokenizers, ``[CLS]``/``[SEP]`` of BERT-type ones (e.g.
    Chinese RoBERTa-wwm checkpoints, which use BERT's tokenizer)."""
    value = getattr(tokenizer, f"{roberta_name}_token_id", None)
    return value if value is not None else getattr(tokenizer, f"{bert_name}_token_id")


def text_window(tokenizer: Any, utterance: Any, context: int, max_length: int) -> TextWindow:
    """Tokenise ``utterance`` with its context, truncating as the module docstring says."""
    joined, start, current = join_window(utterance, context)
    end = start + len(current)
    encoding = tokenizer(joined, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(encoding["input_ids"], dtype=np.int64)  # (n,)
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)  # (n, 2)
    is_current = (offsets[:, 0] >= start) & (offsets[:, 0] < end)
    rows = np.flatnonzero(is_current)
    first, last = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
    a, b, note = _keep_range(len(ids), first, last, max_length - 2)
    ids, offsets, is_current = ids[a:b], offsets[a:b], is_current[a:b]
    spans = np.where(is_current[:, None], offsets - start, -1)
    outside = np.array([[-1, -1]])
    return TextWindow(
        input_ids=np.concatenate([[_special_id(tokenizer, "bos", "cls")], ids, [_special_id(tokenizer, "eos", "sep")]]),
        current=np.concatenate([[0], is_current, [0]]).astype(np.uint8),
        spans=np.concatenate([outside, spans, outside]),
        current_text=current,
        truncated=note,
    )


@register_encoder("roberta")
class RobertaEncoder(Encoder):
    """RoBERTa ``last_hidden_state`` per token of the context window, with the text graph."""

    modality = "text"
    settings_class = RobertaSettings

    @classmethod
    def paper_settings(cls) -> RobertaSettings:
        return RobertaSettings()

    @classmethod
    def tiny_settings(cls) -> RobertaSettings:
        return RobertaSettings(model="tiny", max_length=128, hidden_size=128, layers=2, heads=4,
                               intermediate_size=256)

    @classmethod
    def weight_specs(cls, settings: RobertaSettings) -> tuple[WeightSpec, ...]:
        if settings.tiny:
            return ()
        return (WeightSpec("roberta", "RoBERTa", (), option="--roberta", hub=settings.model),)

    def __init__(self, settings: RobertaSettings, tokenizer: Any, model: torch.nn.Module,
                 parser: DependencyParser, weights_id: str, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.settings = settings
        self.tokenizer = tokenizer
        # Without gradients autocast keeps no low-precision copy of the weights during a batch
        # (710 MB for RoBERTa-large in bfloat16); one forward per batch casts each weight once anyway.
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.parser = parser
        self.weights_id = weights_id

    @classmethod
    def from_profile(cls, profile: Any, weights: ResolvedWeights, device: torch.device | str,
                     parser: Any = None) -> "RobertaEncoder":
        """The profile's RoBERTa; ``parser`` (default: the profile's spaCy parser) makes the text graph."""
        settings: RobertaSettings = profile.settings[cls.name]
        parser = parser or make_parser(profile.parser)
        if settings.tiny:
            from transformers import RobertaConfig, RobertaModel

            tokenizer = tiny_tokenizer()
            config = RobertaConfig(
                vocab_size=len(tokenizer), hidden_size=settings.hidden_size,
                num_hidden_layers=settings.layers, num_attention_heads=settings.heads,
                intermediate_size=settings.intermediate_size,
                max_position_embeddings=settings.max_length + 2, pad_token_id=tokenizer.pad_token_id,
            )
            with seeded(profile.seed):
                model = RobertaModel(config, add_pooling_layer=False)
            return cls(settings, tokenizer, model, parser, weights_id(cls, settings, weights, profile.seed), device)
        from transformers import AutoModel, AutoTokenizer

        source = str(weights.path("roberta"))
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        model = AutoModel.from_pretrained(source, add_pooling_layer=False)
        return cls(settings, tokenizer, model, parser, weights_id(cls, settings, weights, profile.seed), device)

    def autocast_networks(self) -> list[torch.nn.Module]:
        return [self.model]

    @property
    def outputs(self) -> list[FeatureSpec]:
        config = {"model": self.settings.model, "context": self.settings.context,
                  "max_length": self.settings.max_length, "parser": self.parser.version}
        streams = (("roberta", (int(self.model.config.hidden_size),), "float16"),
                   ("roberta_current", (), "uint8"), ("token_word", (), "int32"), ("text_edges", (2,), "int32"))
        return [FeatureSpec(name, shape, dtype, self.name, self.weights_id, config) for name, shape, dtype in streams]

    def encode(self, utterances: Sequence[Any], prepared: Sequence[Any]) -> list[Encoded]:
        windows = [text_window(self.tokenizer, u, self.settings.context, self.settings.max_length)
                   for u in utterances]
        parses = self.parser.parse([w.current_text for w in windows])
        hidden = self._forward(windows)
        return [self._item(w, words, h) for w, words, h in zip(windows, parses, hidden)]

    @torch.inference_mode()
    def _forward(self, windows: Sequence[TextWindow]) -> list[np.ndarray]:
        lengths = [len(w.input_ids) for w in windows]
        ids = torch.full((len(windows), max(lengths)), self.tokenizer.pad_token_id, dtype=torch.long)  # (B, n)
        for row, window in enumerate(windows):
            ids[row, :lengths[row]] = torch.from_numpy(window.input_ids)
        mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, n)
        with self.autocast():
            states = self.model(input_ids=to_device(ids, self.device),
                                attention_mask=to_device(mask, self.device)).last_hidden_state
        states = to_float16(states)  # (B, n, H)
        return [states[row, :n] for row, n in enumerate(lengths)]

    @staticmethod
    def _item(window: TextWindow, words: list[Word], hidden: np.ndarray) -> Encoded:
        rows = np.flatnonzero(window.current)
        features = {
            "roberta": hidden,
            "roberta_current": window.current,
            "token_word": token_words(words, window.spans, len(window.current_text)),
            "text_edges": dependency_edges(words, window.spans, rows),
        }
        return Encoded(features, {"truncated": window.truncated} if window.truncated else {})
