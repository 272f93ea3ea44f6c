"""The arithmetic precision stage one's encoders run in (``hcm extract --precision``).

``float32`` runs every network in float32 (on CUDA without cuDNN's TF32 convolutions).
``bfloat16`` and ``float16`` run them under ``torch.autocast`` with that dtype: matrix products
and convolutions in the low-precision type, normalisations, softmax and reductions in float32 as
autocast's policy says, and the parts an encoder keeps in float32 explicitly (ESResNeXt's FBSP
front end, see ``esresnext.py``) stay there. The cache stores float16 features whatever the precision;
the precision only changes what the networks compute, within the tolerances of docs/extraction.md.

In bfloat16 and float16, the weights autocast casts at every call anyway (those of linear layers,
convolutions and attention in-projections) are stored in its dtype once, when an encoder is built
(:func:`store_autocast_weights`): the outputs are the same bits, and the float32 copies are not
held (RoBERTa-large's linear weights: 0.6 GB instead of 1.2 GB).

``auto`` picks, in order:

- the precision of the cache being resumed (or read, for ``hcm predict``) when this device can
  run it, so that one cache is never made of two precisions;
- on CUDA, float16 (tensor cores on every CUDA GPU);
- on a CPU with native bfloat16 matrix units (x86 AMX-BF16 or AVX512-BF16, Arm BF16), bfloat16
  for the ``paper`` profile; the ``tiny`` profile stays float32 so that its features, used by
  the tests and the offline demo, do not depend on the CPU's instruction set;
- float32 otherwise.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator

import torch
from torch import nn

from hcm.core.errors import UsageError
from hcm.core.memory import FileMappings

PRECISIONS = ("float32", "bfloat16", "float16")
CHOICES = ("auto", *PRECISIONS)
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# torch.cpu.get_capabilities() keys of native bfloat16 matrix instructions (x86, then Arm).
CPU_BF16_UNITS = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")
# The layers whose weights autocast casts to its dtype at every call (matrix products and
# convolutions), and the names of those weights.
AUTOCAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)
AUTOCAST_WEIGHTS = ("weight", "bias", "in_proj_weight", "in_proj_bias", "q_proj_weight", "k_proj_weight",
                    "v_proj_weight")


def native_bfloat16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AMX-BF16, AVX512-BF16, Arm BF16)."""
    capabilities = torch.cpu.get_capabilities()
    return any(bool(capabilities.get(name)) for name in CPU_BF16_UNITS)


def unsupported(precision: str, device: torch.device) -> str | None:
    """Why ``device`` cannot run ``precision`` (``None``: it can).

    The CPU runs all three (bfloat16 and float16 by emulation where it has no native units:
    correct, only slower); a GPU without bfloat16 support cannot run bfloat16.
    """
    if precision != "bfloat16" or device.type != "cuda":
        return None
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        return f"the GPU {torch.cuda.get_device_name(device)} has no bfloat16 support"
    return None


def device_default(device: torch.device, tiny: bool) -> str:
    """``auto`` without a cache to follow: float16 on CUDA, bfloat16 on a CPU with native
    bfloat16 units (not for the ``tiny`` profile), float32 otherwise."""
    if device.type == "cuda":
        return "float16"
    return "bfloat16" if device.type == "cpu" and not tiny and native_bfloat16_cpu() else "float32"


def check_choice(requested: str) -> str:
    """``requested`` if it is one of :data:`CHOICES`, else a :class:`UsageError` naming them."""
    if requested not in CHOICES:
        raise UsageError(f"--precision {requested!r} is not a precision; choose one of {', '.join(CHOICES)}")
    return requested


def choose_precision(requested: str, device: torch.device, tiny: bool, cached: str | None = None) -> str:
    """The precision to run: ``requested`` itself, or for ``auto`` the cache's (``cached``) when
    ``device`` can run it, else :func:`device_default`. A precision the device cannot run, or an
    unknown name, is a :class:`UsageError` naming the choices."""
    if check_choice(requested) == "auto":
        if cached in PRECISIONS and unsupported(cached, device) is None:
            return cached
        return device_default(device, tiny)
    reason = unsupported(requested, device)
    if reason:
        raise UsageError(f"--precision {requested} cannot run on {device}: {reason}; use --precision float16 or "
                         f"float32 (or auto)")
    return requested


def mismatch_note(cached: str, chosen: str, device: torch.device) -> str:
    """What a prediction must say when its features are computed in ``chosen`` but its cache holds
    features computed in ``cached``."""
    reason = unsupported(cached, device)
    why = f" ({reason})" if reason else " (--precision)"
    return (f"features computed in {chosen} on {device}{why}, but the run's cache was extracted in {cached}: "
            f"they differ from what the model was trained on by up to the tolerances of docs/extraction.md "
            f"(Precision)")


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The autocast context of ``precision`` on ``device``; for float32 none, except that on CUDA
    cuDNN's TF32 convolutions (torch's default) are switched off so float32 means float32."""
    if precision != "float32":
        return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
    return _cudnn_without_tf32() if device.type == "cuda" else nullcontext()


@contextmanager
def _cudnn_without_tf32() -> Iterator[None]:
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def store_autocast_weights(model: nn.Module, precision: str) -> nn.Module:
    """Store ``model``'s weights that autocast casts to ``precision``'s dtype anyway in that dtype.

    Under autocast a linear layer, a convolution or an attention in-projection casts its float32
    weight and bias to bfloat16 (float16) at every call and computes in that dtype; stored in it
    once, they give the same bits without the float32 copy being held. Everything autocast keeps
    in float32 stays so: norms, embeddings and parameters used outside these layers. A float32
    weight read from a mapped weight file gives its pages back once converted
    (:class:`hcm.core.memory.FileMappings`), so converting never holds both copies of more than one
    weight. Only for networks that run wholly under autocast (``Encoder.autocast_networks``);
    float32 leaves the model as it is.
    """
    if precision == "float32":
        return model
    dtype = AUTOCAST_DTYPES[precision]
    mappings = FileMappings()
    for module in model.modules():
        if not isinstance(module, AUTOCAST_LAYERS):
            continue
        for name in AUTOCAST_WEIGHTS:
            weight = getattr(module, name, None)
            if isinstance(weight, nn.Parameter) and weight.is_floating_point() and weight.dtype != dtype:
                setattr(module, name, nn.Parameter(weight.detach().to(dtype), requires_grad=weight.requires_grad))
                mappings.release(weight)
    return model
