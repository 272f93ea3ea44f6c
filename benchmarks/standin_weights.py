"""Full-size random stand-ins for the paper profile's weight files, in their released formats.

Pretrained weights cannot be downloaded everywhere hcm is tested, so this writes a folder that
``hcm extract --profile paper --weights-dir DIR`` accepts exactly as it accepts the real one:

==================================  ===========================================================
``roberta-large/``                  Hugging Face layout: ``config.json`` (roberta-large's),
                                    ``model.safetensors`` (``RobertaForMaskedLM``, 355 M values),
                                    ``vocab.json`` (50,265 entries), ``merges.txt`` and
                                    ``tokenizer.json`` from a byte-level BPE trained with
                                    ``tokenizers`` on the Python standard library's sources
``efficientnet-b0-355c32eb.pth``    efficientnet_pytorch's state dict of ``efficientnet-b0``
                                    (classifier ``_fc`` included), as ``torch.save`` writes it
``AudioCLIP-Full-Training.pt``      one plain state dict: CLIP RN50 keys, ``audio.*`` keys of
                                    ESResNeXt-FBSP, ``logit_scale_ai``/``logit_scale_at``
``RN50.pt``                         a TorchScript archive whose state dict holds OpenAI's float16
                                    conversion of the CLIP weights plus ``input_resolution``,
                                    ``context_length`` and ``vocab_size``
``bpe_simple_vocab_16e6.txt.gz``    gzip text: one header line, then 48,894 merges ``a b`` of a
                                    lower-cased byte-level BPE with the ``</w>`` word-end marker
==================================  ===========================================================

Weights are random (seeded): BatchNorm statistics are calibrated on noise so activations keep
a sane scale, and the CLIP weights in ``RN50.pt`` and in the AudioCLIP file are the same. The
features mean nothing; what the stand-ins prove is that the paper path loads, runs and writes
a valid cache at full size, and how much that costs. Nothing here is shipped as a file.

    python benchmarks/standin_weights.py DIR          # about 2.2 GB, a few minutes on 2 cores

Tests import it by path (the ``standin`` and ``standin_weights`` fixtures of tests/conftest.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import sysconfig
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from hcm.pipeline.encoders.base import calibrate_batchnorm, seeded

logger = logging.getLogger(__name__)

# The released file names, as the paper profile looks for them in --weights-dir.
ROBERTA_FOLDER = "roberta-large"
EFFICIENTNET_FILE = "efficientnet-b0-355c32eb.pth"
AUDIOCLIP_FILE = "AudioCLIP-Full-Training.pt"
RN50_FILE = "RN50.pt"
CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
ROBERTA_VOCAB_SIZE = 50265
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3 as in roberta-large; <mask> is the last id
ROBERTA_CONFIG = {
    "architectures": ["RobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 0,
    "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 1024,
    "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514, "model_type": "roberta", "num_attention_heads": 16,
    "num_hidden_layers": 24, "pad_token_id": 1, "type_vocab_size": 1, "vocab_size": ROBERTA_VOCAB_SIZE,
}
CLIP_PRETOKENIZE = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""  # CLIP's, minus specials
CLIP_BPE_HEADER = '"bpe_simple_vocab_16e6.txt#version: 0.2'
CALIBRATION_BATCH = 4


MIN_TEXT_CHARS = 30_000_000  # enough for CLIP's 48,894 merges; a full CPython stdlib has about 31 M


def _sources(folder: Path, skip_site_packages: bool) -> Iterable[str]:
    for path in sorted(folder.rglob("*.py")):
        if skip_site_packages and "site-packages" in path.parts:
            continue
        try:
            yield path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue


def local_text() -> list[str]:
    """The Python standard library's UTF-8 ``.py`` sources in path order (~31 MB of text); where the
    installation ships less (Debian leaves out the stdlib's tests), the installed packages'
    sources follow, in path order, up to :data:`MIN_TEXT_CHARS`."""
    paths = sysconfig.get_paths()
    texts = list(_sources(Path(paths["stdlib"]), skip_site_packages=True))
    total = sum(map(len, texts))
    for folder in dict.fromkeys((paths["purelib"], paths["platlib"])):
        for text in _sources(Path(folder), skip_site_packages=False):
            if total >= MIN_TEXT_CHARS:
                return texts
            texts.append(text)
            total += len(text)
    return texts


def _train_bpe(texts: Iterable[str], vocab_size: int, specials: list[str],
               clip_style: bool) -> dict:
    """A byte-level BPE trained on ``texts``: the ``model`` part of its tokenizer.json."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    suffix = {"end_of_word_suffix": "</w>"} if clip_style else {}
    bpe = Tokenizer(models.BPE(**suffix))
    if clip_style:  # CLIP splits on its regex (whitespace dropped), then maps bytes to characters
        bpe.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(CLIP_PRETOKENIZE), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **suffix)
    bpe.train_from_iterator(texts, trainer)
    return json.loads(bpe.to_str())["model"]


def write_roberta_tokenizer(folder: Path, texts: list[str]) -> None:
    """``vocab.json`` (50,265 ids, <mask> last), ``merges.txt`` and ``tokenizer.json`` in ``folder``."""
    from transformers import RobertaTokenizerFast

    model = _train_bpe(texts, ROBERTA_VOCAB_SIZE, [*ROBERTA_SPECIALS, "<mask>"], clip_style=False)
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    tokens = [t for t in tokens if t != "<mask>"] + ["<mask>"]
    if len(tokens) != ROBERTA_VOCAB_SIZE:
        raise RuntimeError(f"the local text gave a {len(tokens)}-token vocabulary, not {ROBERTA_VOCAB_SIZE}")
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = [tuple(pair) for pair in model["merges"]]
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [" ".join(pair) for pair in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = RobertaTokenizerFast(vocab=vocab, merges=merges)
    if len(tokenizer) != ROBERTA_VOCAB_SIZE or tokenizer.pad_token_id != 1:
        raise RuntimeError(f"transformers built a {len(tokenizer)}-token tokenizer (pad id "
                           f"{tokenizer.pad_token_id}) from the {ROBERTA_VOCAB_SIZE}-token vocabulary")
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))


def write_roberta(folder: Path, texts: list[str], seed: int) -> Path:
    """A ``roberta-large`` folder: config, random ``model.safetensors``, tokenizer files."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    folder.mkdir(parents=True, exist_ok=True)
    write_roberta_tokenizer(folder, texts)
    with seeded(seed):
        model = RobertaForMaskedLM(RobertaConfig(**ROBERTA_CONFIG))
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "config.json").write_text(json.dumps(ROBERTA_CONFIG, indent=2) + "\n", encoding="utf-8")
    return folder


def write_clip_vocab(path: Path, texts: list[str]) -> Path:
    """A ``bpe_simple_vocab_16e6.txt.gz``-format merges file trained on lower-cased ``texts``."""
    from hcm.pipeline.encoders.clip_tokenizer import CLIP_NUM_MERGES

    model = _train_bpe((t.lower() for t in texts), CLIP_NUM_MERGES + 1024, [], clip_style=True)
    merges = model["merges"][:CLIP_NUM_MERGES]
    if len(merges) < CLIP_NUM_MERGES:
        raise RuntimeError(f"the local text gave {len(merges)} CLIP merges, not {CLIP_NUM_MERGES}")
    lines = [CLIP_BPE_HEADER] + [" ".join(pair) for pair in merges]
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _calibrated(model: nn.Module, inputs: torch.Tensor, forward_name: str = "forward") -> nn.Module:
    """``model`` with BatchNorm statistics of one train-mode pass over ``inputs`` (eval mode)."""
    return calibrate_batchnorm(model, lambda: getattr(model, forward_name)(inputs))


def write_efficientnet(path: Path, seed: int) -> Path:
    """efficientnet_pytorch's ``efficientnet-b0`` state dict (with its classifier), random."""
    from efficientnet_pytorch import EfficientNet

    with seeded(seed):
        model = EfficientNet.from_name("efficientnet-b0")
        noise = torch.randn(CALIBRATION_BATCH, 3, 224, 224)  # (B, 3, 224, 224)
        model = _calibrated(model, noise, "extract_features")
    torch.save(model.state_dict(), path)
    return path


def random_clip(seed: int) -> nn.Module:
    """hcm's CLIP RN50 at the released configuration, random, BatchNorm calibrated on noise."""
    from hcm.pipeline.encoders.clip import CLIP, rn50_config

    with seeded(seed):
        model = CLIP.from_config(rn50_config())
        noise = torch.randn(CALIBRATION_BATCH, 3, 224, 224)  # (B, 3, 224, 224), about normalised pixels
        return _calibrated(model, noise, "encode_image")


def random_esresnext(seed: int) -> nn.Module:
    """hcm's ESResNeXt-FBSP at AudioCLIP's configuration, random, BatchNorm calibrated on noise."""
    from hcm.pipeline.encoders.esresnext import ESResNeXtFBSP, released_config

    with seeded(seed):
        model = ESResNeXtFBSP.from_config(released_config())
        noise = torch.randn(CALIBRATION_BATCH, 44100) * 3000.0  # (B, n): 1 s in the int16 range
        return _calibrated(model, noise)


def write_audioclip(path: Path, clip: nn.Module, audio: nn.Module) -> Path:
    """AudioCLIP's combined plain state dict (CLIP keys, ``audio.*``, the two extra scales)."""
    state = dict(clip.state_dict())
    state.update({f"audio.{key}": value for key, value in audio.state_dict().items()})
    state["logit_scale_ai"] = torch.tensor(4.6052)
    state["logit_scale_at"] = torch.tensor(4.6052)
    torch.save(state, path)
    return path


class ReleasedClipArchive(nn.Module):
    """The modules of a CLIP plus OpenAI's hyper-parameter entries, for a TorchScript archive."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, parameter in clip.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        config = clip.config
        self.register_buffer("input_resolution", torch.tensor(config.image_resolution))
        self.register_buffer("context_length", torch.tensor(config.context_length))
        self.register_buffer("vocab_size", torch.tensor(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.input_resolution


def _openai_float16(model: nn.Module) -> nn.Module:
    """OpenAI's ``convert_weights``: conv/linear/attention weights and projections to float16."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.weight.data = module.weight.data.half()
            if module.bias is not None:
                module.bias.data = module.bias.data.half()
        if isinstance(module, nn.MultiheadAttention):
            for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                         "in_proj_bias", "bias_k", "bias_v"):
                tensor = getattr(module, name)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ("text_projection", "proj"):
            tensor = getattr(module, name, None)
            if isinstance(tensor, nn.Parameter):
                tensor.data = tensor.data.half()
    return model


def write_rn50(path: Path, clip: nn.Module) -> Path:
    """OpenAI's ``RN50.pt`` layout: a TorchScript archive with float16 CLIP weights (``clip`` is converted)."""
    archive = _openai_float16(ReleasedClipArchive(clip))
    torch.jit.save(torch.jit.trace(archive, torch.zeros(1)), str(path))
    return path


def write_standin_weights(folder: Path, seed: int = 0) -> dict[str, float]:
    """Write every stand-in into ``folder``; seconds each took, by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name: str, make: Callable[[], object]) -> None:
        started = time.perf_counter()
        make()
        seconds[name] = round(time.perf_counter() - started, 1)
        logger.info("wrote %s in %.1f s", name, seconds[name])

    texts = local_text()
    timed(CLIP_BPE_FILE, lambda: write_clip_vocab(folder / CLIP_BPE_FILE, texts))
    timed(ROBERTA_FOLDER, lambda: write_roberta(folder / ROBERTA_FOLDER, texts, seed))
    timed(EFFICIENTNET_FILE, lambda: write_efficientnet(folder / EFFICIENTNET_FILE, seed + 1))
    clip = random_clip(seed + 2)
    timed(AUDIOCLIP_FILE, lambda: write_audioclip(folder / AUDIOCLIP_FILE, clip, random_esresnext(seed + 3)))
    timed(RN50_FILE, lambda: write_rn50(folder / RN50_FILE, clip))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where to write the stand-in weights (created)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(write_standin_weights(args.folder, args.seed)))


if __name__ == "__main__":
    main()
