"""CLIP RN50-family model, its preprocessing and tokenizer against the reference fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hcm.pipeline.encoders.clip import (
    CLIP,
    CLIP_MEAN,
    CLIP_STD,
    CLIPConfig,
    preprocess_frames,
    tiny_config,
)
from hcm.pipeline.encoders.clip_tokenizer import (
    CLIP_VOCAB_SIZE,
    TINY_VOCAB_SIZE,
    ClipTokenizer,
    bytes_to_unicode,
    clean_text,
    read_bpe_merges,
)


@pytest.fixture(scope="module")
def clip_fixture(shared_fixtures: Path) -> dict:
    return torch.load(shared_fixtures / "clip_tiny.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def bpe_tokenizer(shared_fixtures: Path) -> ClipTokenizer:
    return ClipTokenizer.from_bpe_file(shared_fixtures / "bpe_simple_vocab_16e6.txt.gz")


@pytest.fixture(scope="module")
def fixture_model(clip_fixture: dict) -> CLIP:
    model = CLIP.from_config(clip_fixture["config"])
    model.load_state_dict(clip_fixture["state_dict"], strict=True)
    return model.eval()


def test_state_dict_keys_and_order_match_fixture(clip_fixture: dict, fixture_model: CLIP) -> None:
    ours = fixture_model.state_dict()
    assert list(ours) == list(clip_fixture["state_dict"])
    assert all(ours[k].shape == v.shape for k, v in clip_fixture["state_dict"].items())
    assert fixture_model.config.vision_heads == clip_fixture["derived"]["vision_heads"]


def test_image_embedding_matches_fixture(clip_fixture: dict, fixture_model: CLIP) -> None:
    with torch.no_grad():
        embedding = fixture_model.encode_image(clip_fixture["image"])
        layer4 = fixture_model.visual.forward_features(clip_fixture["image"])
    torch.testing.assert_close(embedding, clip_fixture["image_embedding"], atol=1e-4, rtol=0)
    torch.testing.assert_close(layer4, clip_fixture["intermediates"]["visual_layer4_out"], atol=1e-4, rtol=0)


def test_text_embedding_matches_fixture(clip_fixture: dict, fixture_model: CLIP) -> None:
    tokens = clip_fixture["text_tokens"]
    with torch.no_grad():
        embedding = fixture_model.encode_text(tokens)
        at_eot = fixture_model.text_features(tokens)
    torch.testing.assert_close(embedding, clip_fixture["text_embedding"], atol=1e-4, rtol=0)
    reference = clip_fixture["intermediates"]["text_ln_final_at_eot"]
    torch.testing.assert_close(at_eot, reference, atol=1e-4, rtol=0)


def test_causal_mask_hides_later_tokens(fixture_model: CLIP) -> None:
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, :4] = torch.tensor([49406, 320, 2368, 49407])
    tokens[1, 4:6] = torch.tensor([1125, 539])  # after the EOT: invisible to the EOT position
    tokens[1, 6] = 0
    with torch.no_grad():
        features = fixture_model.text_features(tokens)
    torch.testing.assert_close(features[0], features[1], atol=1e-6, rtol=0)


def test_preprocessing_reproduces_fixture_normalisation(clip_fixture: dict) -> None:
    unnormalised = clip_fixture["image_unnormalized_0_1"]  # (2, 3, S, S) in [0, 1]
    frames = (unnormalised.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    size = clip_fixture["config"]["image_resolution"]
    out = preprocess_frames(frames, size)
    assert out.shape == (2, 3, size, size) and out.dtype == torch.float32
    # Frames already at the model size pass resize and crop unchanged: only 8-bit rounding remains.
    half_step = 0.5 / 255 / min(CLIP_STD)
    assert (out - clip_fixture["image"]).abs().max() <= half_step + 1e-6
    assert list(CLIP_MEAN) == clip_fixture["image_mean"] and list(CLIP_STD) == clip_fixture["image_std"]


def test_preprocessing_resizes_shorter_side_and_centre_crops() -> None:
    frame = np.zeros((40, 120, 3), dtype=np.uint8)  # wide frame: three vertical bands
    frame[:, :40] = (255, 0, 0)
    frame[:, 40:80] = (0, 255, 0)
    frame[:, 80:] = (0, 0, 255)
    out = preprocess_frames(frame[None], 32)  # resized to 32 x 96, centre 32 columns = green band
    assert out.shape == (1, 3, 32, 32)
    green = (torch.tensor([0.0, 1.0, 0.0]) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(out[0, :, :, 8:24], green.view(3, 1, 1).expand(3, 32, 16), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.float32),
                                 np.zeros((1, 4, 4, 4), np.uint8)])
def test_preprocessing_rejects_bad_frames(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        preprocess_frames(bad, 32)


def test_tokens_match_fixture(clip_fixture: dict, bpe_tokenizer: ClipTokenizer) -> None:
    assert bpe_tokenizer.vocab_size == CLIP_VOCAB_SIZE
    tokens = bpe_tokenizer(clip_fixture["sentences"])
    assert tokens.dtype == torch.long
    assert torch.equal(tokens, clip_fixture["text_tokens"])
    assert torch.equal(tokens.argmax(dim=-1), clip_fixture["text_eot_index"])


def test_tokenizer_conventions(bpe_tokenizer: ClipTokenizer) -> None:
    assert clean_text("  It&amp;amp;s\n\tA  TEST ") == "it&s a test"
    digits = bpe_tokenizer.encode("7:30")
    assert len(digits) == 4  # digits are split one by one: 7 : 3 0
    row = bpe_tokenizer("word " * 200)[0]
    assert row[0] == 49406 and row[-1] == 49407 and (row != 0).all()  # truncated, EOT kept
    assert bpe_tokenizer.is_truncated("word " * 200) and not bpe_tokenizer.is_truncated("word")
    short = bpe_tokenizer("")[0]
    assert short[:2].tolist() == [49406, 49407] and (short[2:] == 0).all()


def test_tokenizer_from_vocab_json_and_merges_txt(tmp_path: Path, shared_fixtures: Path,
                                                  bpe_tokenizer: ClipTokenizer) -> None:
    merges = read_bpe_merges(shared_fixtures / "bpe_simple_vocab_16e6.txt.gz")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    from_folder = ClipTokenizer.from_directory(tmp_path)
    texts = ["Hello WORLD, it's 2024!", "naïve café — ok?"]
    assert torch.equal(from_folder(texts), bpe_tokenizer(texts))


def test_tokenizer_rejects_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        ClipTokenizer.from_directory(tmp_path)
    bad = tmp_path / "bpe.txt.gz"
    bad.write_text("not gzip")
    with pytest.raises(ValueError, match="not a gzip"):
        ClipTokenizer.from_bpe_file(bad)


def test_tiny_tokenizer_and_tiny_model_work_together() -> None:
    tokenizer = ClipTokenizer.tiny()
    assert tokenizer.vocab_size == TINY_VOCAB_SIZE
    tokens = tokenizer(["A cat.", "Ünïcode &amp; more"])
    assert tokens.shape == (2, 77)
    assert tokens[:, 0].tolist() == [512, 512] and int(tokens.max()) == 513
    torch.manual_seed(0)
    model = CLIP(tiny_config(vocab_size=tokenizer.vocab_size)).eval()
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 80, 3), dtype=np.uint8)
    with torch.no_grad():
        text = model.encode_text(tokens)
        image = model.encode_image(preprocess_frames(frames, model.config.image_resolution))
    assert text.shape == (2, 64) and image.shape == (3, 64)
    assert torch.isfinite(text).all() and torch.isfinite(image).all()


def test_model_input_errors(fixture_model: CLIP) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 96, 96\)"):
        fixture_model.encode_image(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="token ids must lie"):
        fixture_model.encode_text(torch.full((1, 77), 60000, dtype=torch.long))
    with pytest.raises(ValueError, match="ViT"):
        CLIP.from_config({**fixture_model.config.to_dict(), "vision_patch_size": 32})
    with pytest.raises(ValueError, match="unknown CLIPConfig key"):
        CLIPConfig.from_dict({"embed_dims": 3})
