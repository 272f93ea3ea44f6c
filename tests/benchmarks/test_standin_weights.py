"""benchmarks/standin_weights.py writes the paper profile's weight files in their released formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from hcm.pipeline.encoders.checkpoints import CLIP_ARCHIVE_EXTRA_KEYS, is_torchscript_archive, read_state_dict
from hcm.pipeline.encoders.clip_tokenizer import CLIP_NUM_MERGES, CLIP_VOCAB_SIZE, ClipTokenizer
from hcm.pipeline.profiles import WeightOptions, get_profile, resolve_weights

# writes ~2.2 GB of weights once per session (2-3 minutes on 2 cores, longer when the machine is shared):
# more time than the default per-test limit (setup.cfg's timeout counts the fixture's setup too)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, dict]:
    return {key: {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
            for key, value in state.items()}


def test_audioclip_and_rn50_match_the_released_state_dicts(standin_weights: Path, shared_fixtures: Path) -> None:
    released = json.loads((shared_fixtures / "audioclip_state_dict_shapes.json").read_text())
    audioclip = torch.load(standin_weights / "AudioCLIP-Full-Training.pt", map_location="cpu", weights_only=True)
    assert _shapes(audioclip) == released  # every key, shape and dtype of AudioCLIP(pretrained=False)

    rn50 = standin_weights / "RN50.pt"
    assert is_torchscript_archive(rn50)
    state = read_state_dict(rn50)
    assert set(CLIP_ARCHIVE_EXTRA_KEYS) <= set(state) and int(state["input_resolution"]) == 224
    assert state["visual.conv1.weight"].dtype == torch.float16  # OpenAI's float16 conversion
    assert state["visual.bn1.running_var"].dtype == torch.float32  # BatchNorm stays float32
    clip_part = {k: v for k, v in released.items() if not k.startswith("audio.") and not k.startswith("logit_scale_")}
    weights = {k: {"shape": list(v.shape)} for k, v in state.items() if k not in CLIP_ARCHIVE_EXTRA_KEYS}
    assert weights == {k: {"shape": v["shape"]} for k, v in clip_part.items()}
    torch.testing.assert_close(state["visual.conv1.weight"].float(),
                               audioclip["visual.conv1.weight"].half().float())  # one CLIP in both files


def test_roberta_folder_and_vocabularies_have_the_released_formats(standin_weights: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoTokenizer

    folder = standin_weights / "roberta-large"
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (1024, 24, 50265)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 50265 and vocab["<pad>"] == 1 and vocab["<mask>"] == 50264
    assert (folder / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer("It was a great movie.")["input_ids"]
    assert len(tokenizer) == 50265 and ids[0] == 0 and ids[-1] == 2 and len(ids) > 3
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        assert weights.get_slice("roberta.embeddings.word_embeddings.weight").get_shape() == [50265, 1024]
        assert "roberta.encoder.layer.23.output.dense.weight" in weights.keys()

    bpe = standin_weights / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "rt", encoding="utf-8") as handle:
        assert len(handle.read().strip("\n").split("\n")) == CLIP_NUM_MERGES + 1  # a header line, then merges
    clip_tokenizer = ClipTokenizer.from_bpe_file(bpe)
    assert clip_tokenizer.vocab_size == CLIP_VOCAB_SIZE
    assert clip_tokenizer(["a photo of a cat"])[0, 0] == 49406


def test_efficientnet_file_is_efficientnet_pytorch_b0(standin_weights: Path) -> None:
    from efficientnet_pytorch import EfficientNet

    state = torch.load(standin_weights / "efficientnet-b0-355c32eb.pth", map_location="cpu", weights_only=True)
    expected = EfficientNet.from_name("efficientnet-b0").state_dict()
    assert _shapes(state) == _shapes(expected)  # the classifier _fc (1000 x 1280) included


def test_paper_profile_resolves_every_weight_from_the_folder(standin_weights: Path) -> None:
    weights = resolve_weights(get_profile("paper"), WeightOptions(weights_dir=standin_weights))
    assert Path(weights.path("roberta")) == (standin_weights / "roberta-large").resolve()
    assert weights.path("clip").name == "RN50.pt" and weights.path("esresnext").name == "AudioCLIP-Full-Training.pt"
    assert weights.path("efficientnet").name == "efficientnet-b0-355c32eb.pth"
    assert weights.path("clip_vocab").name == "bpe_simple_vocab_16e6.txt.gz"
    assert all(digest.startswith("sha256:") for digest in weights.digests.values())


def test_local_text_tops_up_a_small_standard_library(standin: ModuleType, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stdlib, site = tmp_path / "lib", tmp_path / "site"
    for folder, names in ((stdlib, ["a.py", "b.py"]), (site, ["x.py", "y.py", "z.py"])):
        folder.mkdir()
        for name in names:
            (folder / name).write_text(name * 10, encoding="utf-8")  # 40 characters each
    (stdlib / "site-packages").mkdir()
    (stdlib / "site-packages" / "skip.py").write_text("not from the standard library")
    monkeypatch.setattr(standin.sysconfig, "get_paths",
                        lambda: {"stdlib": str(stdlib), "purelib": str(site), "platlib": str(site)})
    monkeypatch.setattr(standin, "MIN_TEXT_CHARS", 100)
    assert standin.local_text() == ["a.py" * 10, "b.py" * 10, "x.py" * 10]  # 80 < 100: one package file more
    monkeypatch.setattr(standin, "MIN_TEXT_CHARS", 60)
    assert standin.local_text() == ["a.py" * 10, "b.py" * 10]
