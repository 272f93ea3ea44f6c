"""Encoder precision: the choice of ``auto``, the device transfer helper, the weights stored in the
low precision, and low-precision outputs against float32 on the reference fixtures and on every
encoder of the ``tiny`` profile.

Tolerances are relative: ||y - y_float32|| / ||y_float32|| over the whole output (Frobenius norm),
on the float16 arrays the cache stores. They are the ones docs/extraction.md (Precision) states,
about twice the errors measured on torch 2.13 (CPU): bfloat16 keeps 8 mantissa bits, float16 11.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hcm.core.errors import UsageError
from hcm.core.torch_archive import read_archive
from hcm.pipeline.encoders import clip, create_encoder, esresnext, precision
from hcm.pipeline.encoders.base import CPU_ROWS_PER_FORWARD, EncoderError, forward_arrays, forward_rows, to_device
from hcm.pipeline.profiles import ResolvedWeights, get_profile

# Relative tolerance per encoder and precision (docs/extraction.md, Precision).
TOLERANCE = {
    "bfloat16": {"roberta": 0.03, "clip_text": 0.03, "clip_image": 0.03, "efficientnet": 0.06, "esresnext": 0.08,
                 "mel": 0.0},
    "float16": {"roberta": 0.006, "clip_text": 0.006, "clip_image": 0.006, "efficientnet": 0.01,
                "esresnext": 0.015, "mel": 0.0},
}
CPU = torch.device("cpu")


def relative_error(value: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> float:
    value, reference = (np.asarray(x, dtype=np.float64) for x in (value, reference))
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


# --------------------------------------------------------------------------- choosing the precision


@pytest.mark.parametrize("capabilities, native", [
    ({"amx_bf16": True, "avx512_bf16": False}, True), ({"avx512_bf16": True}, True), ({"bf16": True}, True),
    ({"avx512_bf16": False, "avx2": True, "avx512_fp16": True}, False), ({}, False),
])
def test_native_bfloat16_reads_torch_cpu_capabilities(monkeypatch: pytest.MonkeyPatch, capabilities: dict,
                                                      native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert precision.native_bfloat16_cpu() is native


@pytest.mark.parametrize("device, tiny, native, cached, expected", [
    ("cpu", False, True, None, "bfloat16"),  # the paper profile on a CPU with bf16 units
    ("cpu", True, True, None, "float32"),  # the tiny profile: the same on every CPU
    ("cpu", False, False, None, "float32"),  # no bf16 units
    ("cpu", False, True, "float32", "float32"),  # a resumed float32 cache stays float32
    ("cpu", True, False, "bfloat16", "bfloat16"),  # and a bfloat16 one bfloat16 (emulated where needed)
    ("cuda", False, True, None, "float16"),
    ("cuda", True, False, "float32", "float32"),
])
def test_auto_precision(monkeypatch: pytest.MonkeyPatch, device: str, tiny: bool, native: bool, cached: str | None,
                        expected: str) -> None:
    monkeypatch.setattr(precision, "native_bfloat16_cpu", lambda: native)
    assert precision.choose_precision("auto", torch.device(device), tiny, cached) == expected
    assert precision.choose_precision("float16", torch.device(device), tiny, cached) == "float16"


def test_a_precision_the_gpu_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    gpu = torch.device("cuda", 0)
    with pytest.raises(UsageError, match="bfloat16 cannot run on cuda:0: the GPU Tesla T4 has no bfloat16 support"):
        precision.choose_precision("bfloat16", gpu, tiny=False)
    assert precision.choose_precision("auto", gpu, tiny=False, cached="bfloat16") == "float16"
    note = precision.mismatch_note("bfloat16", "float16", gpu)
    assert "computed in float16" in note and "extracted in bfloat16" in note and "Tesla T4" in note


def test_unknown_precision_names_the_choices() -> None:
    with pytest.raises(UsageError, match="auto, float32, bfloat16, float16"):
        precision.choose_precision("half", CPU, tiny=True)


def test_encoders_run_in_their_precision() -> None:
    profile = get_profile("tiny")
    encoder = create_encoder("clip_image", profile, ResolvedWeights(), "cpu", "bfloat16")
    assert encoder.precision == "bfloat16"
    with encoder.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    encoder.precision = "float32"
    with encoder.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(EncoderError, match="precision 'half'"):
        create_encoder("clip_image", profile, ResolvedWeights(), "cpu", "half")


def test_float32_on_cuda_turns_off_tf32_convolutions() -> None:
    before = torch.backends.cudnn.allow_tf32
    with precision.autocast("float32", torch.device("cuda")):  # only flags: runs without a GPU
        assert torch.backends.cudnn.allow_tf32 is False and not torch.is_autocast_enabled("cuda")
    assert torch.backends.cudnn.allow_tf32 == before


def test_to_device_on_the_cpu_uses_the_array_in_place() -> None:
    flat = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = to_device(flat, CPU)
    assert tensor.data_ptr() == flat.ctypes.data  # no copy
    images = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)  # (B, 3, H, W)
    last = to_device(images, CPU, torch.channels_last)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, torch.from_numpy(images))
    assert to_device(torch.ones(2, 3, dtype=torch.long), CPU).dtype == torch.long


def test_forward_rows_runs_the_cpu_in_passes_of_a_few_rows() -> None:
    sizes: list[int] = []

    def double(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        return 2 * x

    rows = torch.arange(2 * CPU_ROWS_PER_FORWARD + 3, dtype=torch.float32)[:, None]  # (N, 1)
    assert torch.equal(forward_rows(double, rows), 2 * rows)
    assert sizes == [CPU_ROWS_PER_FORWARD, CPU_ROWS_PER_FORWARD, 3]
    sizes.clear()
    assert torch.equal(forward_rows(double, rows[:2]), 2 * rows[:2]) and sizes == [2]


def test_to_device_for_cuda_copies_through_pinned_memory_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU substitute of the CUDA test below: for a CUDA device the batch is pinned once and
    sent with one non-blocking copy (both stood in for here), in channels-last layout."""
    calls: list = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append(("pin",)) or self.clone())
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *args, **kwargs: calls.append(("to", args, kwargs)) or self)
    images = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)  # (B, 3, H, W)
    gpu = torch.device("cuda", 0)
    moved = to_device(images, gpu, torch.channels_last)
    assert calls == [("pin",), ("to", (gpu,), {"non_blocking": True})]
    assert moved.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved, torch.from_numpy(images))


def test_forward_arrays_gathers_the_items_rows_into_the_same_passes() -> None:
    layouts: list[tuple[int, bool]] = []

    def double(x: torch.Tensor) -> torch.Tensor:
        layouts.append((len(x), x.is_contiguous(memory_format=torch.channels_last)))
        return 2 * x.float()

    n = CPU_ROWS_PER_FORWARD
    arrays = [np.random.default_rng(i).integers(0, 255, (k, 3, 2, 2), dtype=np.uint8)
              for i, k in enumerate([n - 3, n + 1, 0, 4])]  # items of (T_i, 3, 2, 2) uint8 crops
    out = forward_arrays(double, arrays, CPU, torch.channels_last)
    assert torch.equal(out, 2 * torch.from_numpy(np.concatenate(arrays)).float())
    assert layouts == [(n, True), (n, True), (2, True)]  # rows cross item borders, as one batch would


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CPU substitute: the test above)")
def test_to_device_on_cuda_copies_through_pinned_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = []
    original = torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(original(self)) or pinned[-1])
    images = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)  # (B, 3, H, W)
    gpu = torch.device("cuda", 0)
    moved = to_device(images, gpu, torch.channels_last)
    assert moved.device == gpu and moved.is_contiguous(memory_format=torch.channels_last)
    assert len(pinned) == 1 and pinned[0].is_pinned()
    assert torch.equal(moved.cpu(), torch.from_numpy(images))


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU (CPU substitute: test_tiny_encoders_stay_within_tolerance_of_float32)")
@pytest.mark.parametrize("chosen", ["bfloat16", "float16"])
def test_tiny_cnn_encoders_on_cuda_stay_within_tolerance(chosen: str) -> None:
    rng = np.random.default_rng(0)
    profile = get_profile("tiny", frames=3, segments=2)
    for name in ("clip_image", "efficientnet", "esresnext"):
        encoder = create_encoder(name, profile, ResolvedWeights(), "cuda")
        media = [rng.integers(0, 256, size=(3, 48, 80, 3), dtype=np.uint8) if encoder.modality == "video" else
                 (rng.standard_normal(44100) * 0.1).astype(np.float32) for _ in range(2)]
        prepared = [encoder.preparer(m) for m in media]
        runs = {}
        for precision_name in ("float32", chosen):
            encoder.precision = precision_name
            encoded = encoder.encode([None] * 2, prepared)
            runs[precision_name] = np.concatenate([item.features[name] for item in encoded])
        assert 0.0 < relative_error(runs[chosen], runs["float32"]) <= TOLERANCE[chosen][name], name


# --------------------------------------------------------------------------- the tiny profile, every encoder


TINY_UTTERANCES = [
    SimpleNamespace(text="i really liked the movie", context_before=["hello there"], context_after=[]),
    SimpleNamespace(text="no, the acting was bad", context_before=[], context_after=["well okay"]),
]


def tiny_prepared(encoder, rng: np.random.Generator) -> list:
    """The preparer's output of synthetic media for each of TINY_UTTERANCES (``None`` for text encoders)."""
    if encoder.preparer is None:
        return [None] * len(TINY_UTTERANCES)
    shape = (3, 48, 80, 3) if encoder.preparer.modality == "video" else None
    media = [rng.integers(0, 256, size=shape, dtype=np.uint8) if shape else
             (rng.standard_normal(encoder.preparer.sample_rate) * 0.1).astype(np.float32) for _ in TINY_UTTERANCES]
    return [encoder.preparer(m) for m in media]


@pytest.fixture(scope="module")
def tiny_outputs() -> dict[str, dict[str, list]]:
    """Every tiny encoder's outputs on one synthetic batch, per precision: {encoder: {precision: [Encoded]}}."""
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    profile = get_profile("tiny", frames=3, segments=2)
    outputs: dict[str, dict[str, list]] = {}
    for name in profile.encoders:
        encoder = create_encoder(name, profile, ResolvedWeights(), "cpu")
        prepared = tiny_prepared(encoder, rng)
        outputs[name] = {}
        for chosen in precision.PRECISIONS:
            encoder.precision = chosen  # float32 weights, cast by autocast at every call
            outputs[name][chosen] = encoder.encode(TINY_UTTERANCES, prepared)
    return outputs


@pytest.mark.parametrize("chosen", ["bfloat16", "float16"])
def test_tiny_encoders_stay_within_tolerance_of_float32(tiny_outputs: dict, chosen: str) -> None:
    assert set(tiny_outputs) == set(TOLERANCE[chosen])  # every encoder of the profile is covered
    for name, runs in tiny_outputs.items():
        for stream in runs["float32"][0].features:
            reference = np.concatenate([item.features[stream] for item in runs["float32"]])
            value = np.concatenate([item.features[stream] for item in runs[chosen]])
            assert value.dtype == reference.dtype and value.shape == reference.shape, (name, stream)
            if reference.dtype != np.float16:  # token marks, word indices, graph edges: exactly the same
                assert np.array_equal(value, reference), (name, stream)
            elif TOLERANCE[chosen][name] == 0.0:  # no network (Mel)
                assert np.array_equal(value, reference), (name, stream)
            else:
                error = relative_error(value, reference)
                assert 0.0 < error <= TOLERANCE[chosen][name], (name, stream, error)


# --------------------------------------------------------------------------- weights stored for autocast


@pytest.mark.parametrize("chosen", ["bfloat16", "float16"])
def test_encoders_built_for_a_low_precision_store_the_weights_autocast_casts(tiny_outputs: dict, chosen: str) -> None:
    """Linear, convolution and attention weights are stored in the autocast dtype, everything else
    stays float32, and the features are bit for bit those of float32 weights cast at every call."""
    dtype = precision.AUTOCAST_DTYPES[chosen]
    rng = np.random.default_rng(0)  # the fixture's media, in the fixture's order
    profile = get_profile("tiny", frames=3, segments=2)
    stored_by = set()
    for name in profile.encoders:
        encoder = create_encoder(name, profile, ResolvedWeights(), "cpu", chosen)
        prepared = tiny_prepared(encoder, rng)
        for network in encoder.autocast_networks():
            for module in network.modules():
                expected = dtype if isinstance(module, precision.AUTOCAST_LAYERS) else torch.float32
                for weight_name, weight in module.named_parameters(recurse=False):
                    assert weight.dtype == expected, (name, type(module).__name__, weight_name)
            stored_by.add(name)
        for item, reference in zip(encoder.encode(TINY_UTTERANCES, prepared), tiny_outputs[name][chosen]):
            for stream, value in reference.features.items():
                assert np.array_equal(item.features[stream], value), (name, stream)
    # ESResNeXt runs its front end and short spectrograms in float32: its weights stay float32
    assert stored_by == {"roberta", "clip_text", "clip_image", "efficientnet"}


def test_float32_keeps_every_weight_in_float32() -> None:
    profile = get_profile("tiny", frames=3, segments=2)
    for name in ("roberta", "clip_image", "efficientnet"):
        encoder = create_encoder(name, profile, ResolvedWeights(), "cpu", "float32")
        assert {weight.dtype for weight in encoder.model.parameters()} == {torch.float32}, name


def test_storing_the_weights_gives_back_the_pages_of_the_mapped_float32_file(tmp_path) -> None:
    """A float32 weight read from a mapped file leaves no resident pages once stored in bfloat16,
    although the file stays mapped for the weights kept in float32 (a LayerNorm here, RoBERTa's
    embeddings in an extraction)."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("reads resident memory from /proc (Linux)")

    def network() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(2048, 4096), torch.nn.LayerNorm(4096))  # a 32 MiB weight

    written = network()
    torch.save(written.state_dict(), tmp_path / "network.pt")
    with torch.device("meta"):
        mapped = network()
    mapped.load_state_dict(read_archive(tmp_path / "network.pt", mapped=True), assign=True)  # as load_clip does
    before = resident_file_kib()
    precision.store_autocast_weights(mapped, "bfloat16")
    assert torch.equal(mapped[0].weight, written[0].weight.to(torch.bfloat16))
    assert mapped[1].weight.dtype == torch.float32 and torch.equal(mapped[1].weight, written[1].weight)
    assert resident_file_kib() - before < 4096  # read, converted and given back (32,768 KiB otherwise)


def resident_file_kib() -> int:
    """This process's resident pages of mapped files (``RssFile``), KiB."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith("RssFile:")).split()[1])


# --------------------------------------------------------------------------- the reference fixtures


@pytest.fixture(scope="module")
def fixture_models(shared_fixtures) -> dict:
    """The fixtures' CLIP (image and text) and ESResNeXt with their inputs and float32 outputs."""
    clip_fixture = torch.load(shared_fixtures / "clip_tiny.pt", map_location="cpu", weights_only=True)
    audio_fixture = torch.load(shared_fixtures / "esresnext_tiny.pt", map_location="cpu", weights_only=True)
    model = clip.CLIP.from_config(clip_fixture["config"])
    model.load_state_dict(clip_fixture["state_dict"])
    model.visual.to(memory_format=torch.channels_last)  # as the encoder runs it
    audio = esresnext.ESResNeXtFBSP.from_config(audio_fixture["config"])
    audio.load_state_dict(audio_fixture["state_dict"])
    audio.to(memory_format=torch.channels_last)
    return {
        "clip_image": (lambda: model.eval().encode_image(clip_fixture["image"]), clip_fixture["image_embedding"]),
        "clip_text": (lambda: model.eval().encode_text(clip_fixture["text_tokens"]), clip_fixture["text_embedding"]),
        "esresnext": (lambda: audio.eval()(audio_fixture["waveform"]), audio_fixture["embedding"]),
    }


@pytest.mark.parametrize("chosen", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", ["clip_image", "clip_text", "esresnext"])
def test_fixture_encoders_stay_within_tolerance_of_float32(fixture_models: dict, name: str, chosen: str) -> None:
    torch.set_num_threads(2)
    forward, reference = fixture_models[name]
    with torch.inference_mode(), precision.autocast(chosen, CPU):
        value = forward()
    stored = value.float().numpy().astype(np.float16)  # what the cache keeps
    error = relative_error(stored, reference)
    limit = 1e-3 if chosen == "float32" else TOLERANCE[chosen][name]  # float32: the float16 rounding alone
    assert error <= limit, (name, chosen, error)


# --------------------------------------------------------------------------- ESResNeXt's float32 parts


@pytest.fixture(scope="module")
def tiny_audio() -> esresnext.ESResNeXtFBSP:
    torch.manual_seed(0)
    model = esresnext.ESResNeXtFBSP.from_config(esresnext.tiny_config(num_classes=8)).eval()
    return model.to(memory_format=torch.channels_last)


def test_esresnext_front_end_runs_in_float32_under_autocast(tiny_audio: esresnext.ESResNeXtFBSP) -> None:
    gen = torch.Generator().manual_seed(0)
    waveform = torch.randn(2, 44100, generator=gen) * 3000  # (B, n): 1 s in the int16 range
    with torch.inference_mode():
        reference = tiny_audio.spectrogram(waveform)
        for dtype in (torch.bfloat16, torch.float16):
            with torch.autocast("cpu", dtype=dtype):
                db = tiny_audio.spectrogram(waveform)
            assert db.dtype == torch.float32 and torch.equal(db, reference)


def test_esresnext_short_spectrograms_skip_cpu_bfloat16(tiny_audio: esresnext.ESResNeXtFBSP) -> None:
    """torch's CPU bfloat16 convolutions are wrong for one-column outputs: short inputs run float32."""
    gen = torch.Generator().manual_seed(0)
    narrow = torch.randn(2, 3, 40, esresnext.MIN_BF16_SIDE - 1, generator=gen)  # (N, 3, H, W): a short dB image
    wide = torch.randn(2, 3, 40, esresnext.MIN_BF16_SIDE + 8, generator=gen)
    with torch.inference_mode():
        references = [tiny_audio._backbone(x) for x in (narrow, wide)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            short, long = (tiny_audio._backbone(x) for x in (narrow, wide))
    assert short.dtype == torch.float32 and torch.equal(short, references[0])
    assert long.dtype == torch.bfloat16 and relative_error(long.float(), references[1]) < 0.08


def test_esresnext_batch_of_several_segment_lengths_keeps_each_clips_rows() -> None:
    profile = get_profile("tiny", segments=2)
    encoder = create_encoder("esresnext", profile, ResolvedWeights(), "cpu")
    rng = np.random.default_rng(1)
    seconds = (0.5, 1.5, 0.5, 3.0)  # three segment lengths, interleaved
    prepared = [encoder.preparer((rng.standard_normal(int(s * 44100)) * 0.1).astype(np.float32)) for s in seconds]
    assert len({p.shape[1] for p in prepared}) == 3
    together = encoder.encode([None] * 4, prepared)
    for item, alone in zip(together, prepared):
        (single,) = encoder.encode([None], [alone])
        assert item.features["esresnext"].shape == (2, 64)
        np.testing.assert_allclose(item.features["esresnext"], single.features["esresnext"], rtol=0, atol=2e-3)
