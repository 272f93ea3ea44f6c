"""Loading released CLIP RN50 and AudioCLIP weight files into hcm's encoder modules.

Supported files (downloaded by the user; hcm never fetches weights itself):

* OpenAI ``RN50.pt``: a TorchScript archive, read as data (its code is never run; see
  :func:`read_state_dict`) and checked against the release's sha256 (a warning when it differs).
  Its state dict holds float16 weights plus the scalar entries ``input_resolution``,
  ``context_length`` and ``vocab_size``, which are not model parameters and are dropped.
* AudioCLIP ``AudioCLIP-Full-Training.pt`` (and the other AudioCLIP ``*.pt`` files of that
  layout): one plain state dict with the CLIP keys (``visual.*``, the text tower, ``logit_scale``),
  the audio keys under ``audio.*`` and the extra scales ``logit_scale_ai``/``logit_scale_at``.
  :func:`split_audioclip_state_dict` separates the CLIP and audio parts.
* AudioCLIP ``ESRNXFBSP.pt``: the audio encoder alone, a plain state dict without prefix.

Configurations are inferred from tensor shapes where the shapes determine them; the text
tower's head count is not visible in the shapes and is taken as ``width // 64``, which holds
for every released CLIP model; pass an explicit config for other widths. Every load is strict:
missing keys, unexpected keys and shape mismatches are reported with the file name.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from hcm.core.errors import UsageError
from hcm.core.pickledata import DamagedPickleError, PickleDataError
from hcm.core.torch_archive import is_script_archive, read_archive, script_tensors
from hcm.pipeline.encoders.clip import CLIP, CLIPConfig, causal_mask
from hcm.pipeline.encoders.esresnext import ESResNeXtConfig, ESResNeXtFBSP
from hcm.pipeline.weights import weight_digest

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

AUDIOCLIP_FILE = "AudioCLIP-Full-Training.pt"
AUDIOCLIP_URL = "https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1/" + AUDIOCLIP_FILE
ESRNX_FILE = "ESRNXFBSP.pt"
RN50_FILE = "RN50.pt"
RN50_SHA256 = "afeb0e10fbe5402f6ec7276a3c5ee2a1a8b06ebf0ba3c2f14a7a4e3b2b11ecc1"  # OpenAI names the folder by it
RN50_URL = f"https://openaipublic.azureedge.net/clip/models/{RN50_SHA256}/{RN50_FILE}"
#: sha256 of released TorchScript files, by file name.
RELEASE_DIGESTS = {RN50_FILE: RN50_SHA256}

# Entries of OpenAI's TorchScript archives that are hyper-parameters, not weights.
CLIP_ARCHIVE_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
AUDIO_PREFIX = "audio."
AUDIOCLIP_EXTRA_KEYS = ("logit_scale_ai", "logit_scale_at")
_MAX_LISTED_KEYS = 8


class CheckpointError(UsageError):
    """A weight file that does not match the model it should fill."""


#: Whether a file is a TorchScript archive (it has compiled code), not a pickled dict.
is_torchscript_archive = is_script_archive


def check_release_digest(path: Path) -> None:
    """Warn when a file named like a release (``RN50.pt``) is not that release's bytes."""
    expected = RELEASE_DIGESTS.get(path.name)
    if expected is None:
        return
    digest = weight_digest(path).removeprefix("sha256:")  # extraction has usually hashed it already
    if digest != expected:
        logger.warning("%s is not OpenAI's released %s (sha256 %s, the release's is %s); its tensors are read "
                       "as data, but check where the file comes from", path, path.name, digest[:16],
                       expected[:16])


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a weight file: a TorchScript archive's module tensors or a plain saved state dict.

    Both are read as data (:func:`hcm.core.torch_archive.read_archive`): a TorchScript archive's
    code is never run. The tensors are mapped from the file (``mapped=True``): only the ones a
    model keeps are ever read, and without a second copy.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} not found")
    script = is_torchscript_archive(path)
    if script:
        check_release_digest(path)
    try:
        state = script_tensors(read_archive(path, script=True, mapped=True)) if script \
            else read_archive(path, mapped=True)
    except DamagedPickleError as error:
        raise CheckpointError(f"{path} is not a readable PyTorch weight file ({error}); download it again") from None
    except PickleDataError as error:
        raise CheckpointError(
            f"{path} was refused: {error}. hcm reads weight files as data only (tensors and plain containers); "
            f"nothing in the file was run. Use the released file"
        ) from None
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a flat state dict: non-tensor entries {_listing(bad)}")
    return dict(state)


def split_audioclip_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """AudioCLIP's combined state dict -> (CLIP state dict, audio state dict without prefix)."""
    audio = {k[len(AUDIO_PREFIX):]: v for k, v in state.items() if k.startswith(AUDIO_PREFIX)}
    clip = {k: v for k, v in state.items()
            if not k.startswith(AUDIO_PREFIX) and k not in AUDIOCLIP_EXTRA_KEYS}
    return clip, audio


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = f" (+{len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else ""
    return f"[{shown}]{more}"


def _require(state: Mapping[str, torch.Tensor], keys: list[str], path: str | Path, what: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not {what}: it lacks {_listing(missing)}")


def _block_counts(state: Mapping[str, torch.Tensor], prefix: str) -> tuple[int, ...]:
    counts = []
    for stage in range(1, 5):
        pattern = re.compile(rf"^{re.escape(prefix)}layer{stage}\.(\d+)\.")
        counts.append(len({m.group(1) for k in state if (m := pattern.match(k))}))
    return tuple(counts)


def infer_clip_config(state: Mapping[str, torch.Tensor], path: str | Path = "<state dict>",
                      transformer_heads: int | None = None) -> CLIPConfig:
    """CLIP config from a CLIP state dict; heads default to ``width // 64`` (released models)."""
    _require(state, ["visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding",
                     "text_projection", "positional_embedding", "token_embedding.weight",
                     "ln_final.weight"], path, "a CLIP ResNet state dict")
    width = state["ln_final.weight"].shape[0]
    grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    resblocks = {m.group(1) for k in state if (m := re.match(r"^transformer\.resblocks\.(\d+)\.", k))}
    if transformer_heads is None:
        transformer_heads = max(width // 64, 1)
        if width % 64 != 0:
            logger.warning("%s: text width %d is not a multiple of 64; assuming %d heads "
                           "(pass an explicit config if that is wrong)", path, width, transformer_heads)
    return CLIPConfig(
        embed_dim=state["text_projection"].shape[1], image_resolution=grid * 32,
        vision_layers=_block_counts(state, "visual."),
        vision_width=state["visual.layer1.0.conv1.weight"].shape[0],
        context_length=state["positional_embedding"].shape[0],
        vocab_size=state["token_embedding.weight"].shape[0], transformer_width=width,
        transformer_heads=transformer_heads, transformer_layers=len(resblocks),
    )


def infer_esresnext_config(state: Mapping[str, torch.Tensor], path: str | Path = "<state dict>",
                           **fixed: Any) -> ESResNeXtConfig:
    """ESResNeXt-FBSP config from an audio state dict.

    ``hop_length``, ``window`` (name) and ``normalized`` leave no trace in the shapes; they take
    AudioCLIP's values unless given in ``fixed`` (the stored window buffer is loaded anyway).
    """
    _require(state, ["conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight", "fc.weight",
                     "window", "fbsp.m"], path, "an ESResNeXt-FBSP state dict")
    base_width = state["conv1.weight"].shape[0]
    bottleneck_width = state["layer1.0.conv1.weight"].shape[0]
    groups = bottleneck_width // state["layer1.0.conv2.weight"].shape[1]
    inferred: dict[str, Any] = dict(
        layers=_block_counts(state, ""), num_classes=state["fc.weight"].shape[0],
        n_fft=2 * (state["fbsp.m"].shape[0] - 1), win_length=state["window"].shape[0],
        apply_attention="att1.bn.weight" in state, groups=groups,
        width_per_group=bottleneck_width // groups * 64 // base_width, base_width=base_width,
    )
    inferred.update(fixed)
    return ESResNeXtConfig(**inferred)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the file and keys unless ``state`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {_listing(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: " + "; ".join(problems)
            + ". Check that the file is the right one, or pass the matching config explicitly."
        )


def _to_float32(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Float tensors as float32, every tensor a copy of its own: the file's mapping (and the pages
    the copy read) is released once the state dict read from it is dropped."""
    return {k: v.to(torch.float32 if v.is_floating_point() else v.dtype, copy=True) for k, v in state.items()}


def clip_state_dict(path: str | Path) -> StateDict:
    """The CLIP part of RN50.pt (TorchScript) or of an AudioCLIP file, float32, extras dropped."""
    state = read_state_dict(path)
    if any(k.startswith(AUDIO_PREFIX) for k in state):
        state, _ = split_audioclip_state_dict(state)
    state = {k: v for k, v in state.items() if k not in CLIP_ARCHIVE_EXTRA_KEYS}
    return _to_float32(state)


def audio_state_dict(path: str | Path) -> StateDict:
    """The ESResNeXt-FBSP weights of ESRNXFBSP.pt or of an AudioCLIP file (``audio.*``), float32."""
    state = read_state_dict(path)
    if any(k.startswith(AUDIO_PREFIX) for k in state):
        _, state = split_audioclip_state_dict(state)
    return _to_float32(state)


def _strict_load(build: Callable[[], torch.nn.Module], state: StateDict, path: str | Path) -> Any:
    """The model ``build`` makes, holding the tensors of ``state`` themselves (checked strictly: a
    clear error naming ``path`` otherwise), in eval mode.

    The model is built on the meta device (no memory, no random initialisation) and takes the
    state's tensors as its parameters (``assign=True``): the weights exist once in memory.
    Buffers that are not stored (``persistent=False``) stay on the meta device; the caller
    rebuilds them.
    """
    with torch.device("meta"):
        model = build()
    check_state_dict(model, state, path)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _no_meta_tensors(model: torch.nn.Module) -> torch.nn.Module:
    left = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if left:
        raise RuntimeError(f"{type(model).__name__} was loaded without values for {_listing(left)}")
    return model


def load_clip(path: str | Path, config: CLIPConfig | Mapping[str, Any] | None = None) -> CLIP:
    """A CLIP model in eval mode with the weights of ``path`` (strict), float32 on the CPU."""
    state = clip_state_dict(path)
    config = infer_clip_config(state, path) if config is None else config
    model = _strict_load(lambda: CLIP.from_config(config), state, path)
    model.attn_mask = causal_mask(model.context_length)  # not stored in checkpoints
    return _no_meta_tensors(model)


def load_esresnext(path: str | Path,
                   config: ESResNeXtConfig | Mapping[str, Any] | None = None) -> ESResNeXtFBSP:
    """An ESResNeXt-FBSP model in eval mode with the weights of ``path`` (strict), float32."""
    state = audio_state_dict(path)
    config = infer_esresnext_config(state, path) if config is None else config
    return _no_meta_tensors(_strict_load(lambda: ESResNeXtFBSP.from_config(config), state, path))


__all__ = [
    "CheckpointError", "audio_state_dict", "check_state_dict", "clip_state_dict",
    "infer_clip_config", "infer_esresnext_config", "is_torchscript_archive", "load_clip",
    "load_esresnext", "read_state_dict", "split_audioclip_state_dict",
]
