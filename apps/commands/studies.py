"""The studies: ``hcm reproduce`` (the paper's tables over seeds) and ``hcm tune`` (hyper-parameter search)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm.apps import options
from hcm.apps.commands import command


@command("reproduce", "hcm reproduce --dataset meld", "hcm reproduce --dataset iemocap --variants full,no-acl --latex")
def reproduce_command(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", callback=options.paper_dataset,
                                          show_default="the cache's",
                                          help="Whose paper numbers to compare with: mosei (Table 3), meld or iemocap "
                                               "(Tables 2 and 4)."),
    features: Optional[Path] = typer.Option(
        None, "--features", exists=True, file_okay=False,
        help="Cache folder (default: the workspace's only cache of --dataset)."),
    seeds: str = typer.Option("1111,1112,1113,1114,1115", "--seeds", callback=options.seed_list,
                              help="Comma list: one run per seed (default: the five seeds the MMSA framework "
                                   "reports over)."),
    variants: str = typer.Option(
        "full", "--variants", callback=options.variant_list,
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
        dataset=dataset, features=features, seeds=seeds, variants=variants, epochs=epochs,
        overrides=dict(settings), model_size=model_size.value, latex=latex, progress=not quiet)
    set_threads(threads)
    raise typer.Exit(run_reproduce(ctx.obj, request))


@command("tune", "hcm tune --trials 50 --workers 2",
         "hcm tune --grid m_gcn=1,2,4,6,8 --confirm-seeds 1,2,3", "hcm tune --status")
def tune_command(
    ctx: typer.Context,
    features: Optional[Path] = typer.Option(
        None, "--features", exists=True, file_okay=False, help="Cache folder (default: the workspace's only cache)."),
    space: Optional[Path] = typer.Option(None, "--space", callback=options.search_space, show_default="shipped",
                                         help="JSON search space (default configs/tune/<dataset>.json): {\"lr\": "
                                              "{\"type\": \"float\", \"low\": 1e-4, \"high\": 1e-3, \"log\": true}, "
                                              "\"m_gcn\": [2, 4, 8]}; MMSA tune configs are read too."),
    grid: list[str] = typer.Option(
        [], "--grid", callback=options.grid_points,
        help="A sweep instead of a search: NAME=V1,V2,... (repeatable; every combination, each over "
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
    options.one_study_kind(grid, space)
    from hcm.apps.tune import TuneRequest
    from hcm.apps.tune import tune_command as run_tune

    request = TuneRequest(
        features=features, study=study, storage=storage, space=space, grid=grid, trials=trials, workers=workers,
        pruner=pruner.value, epochs=epochs, overrides=dict(settings), model_size=model_size.value,
        seed=seed, confirm_seeds=confirm_seeds, top=top, heartbeat=heartbeat, threads=threads,
        status=show_status, progress=not quiet)
    raise typer.Exit(run_tune(ctx.obj, request))
