"""The training commands: ``hcm train``, ``hcm evaluate``, ``hcm runs``, ``hcm predict`` and ``hcm ablate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm.apps import options
from hcm.apps.commands import command


@command("train", "hcm train --epochs 20 --set dropout=0.2 --seeds 0,1,2")
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


@command("evaluate", "hcm evaluate --split valid --json")
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


@command("runs", "hcm runs --dataset mosei")
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


@command("predict", 'hcm predict clip.mp4 --text "I loved every minute of it"',
         "hcm predict clips.csv --out predictions.csv")
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


@command("ablate", "hcm ablate --variants full,no-acl --modalities '' --seeds 0,1,2")
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

    names = options.names
    request = AblationRequest(
        features=features or None, variants=None if variants is None else names(variants),
        modalities=None if modalities is None else names(modalities), readings=names(readings),
        switches=names(switches), epochs=epochs, seeds=seeds, overrides=dict(settings), progress=not quiet)
    raise typer.Exit(run_ablate(ctx.obj, request))
