"""Looking inside runs: ``hcm explain`` (one item's plans, graphs, attention) and ``hcm report`` (an HTML page)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm.apps import options
from hcm.apps.commands import command


def _id_list(value: Optional[str]) -> Optional[list[str]]:
    """``--ids`` as a list of at least one id; None when not given."""
    if value is not None:
        ids = options.names(value)
        if not ids:
            raise typer.BadParameter("give at least one item id, e.g. --ids abc$_$1,abc$_$2")
        return ids
    return None


@command("explain", "hcm explain --split test --worst 3", 'hcm explain clip.mp4 --text "I loved every minute of it"')
def explain_command(
    ctx: typer.Context,
    clip: Optional[Path] = typer.Argument(None, exists=True,
                                          help="A new clip to explain (extracted as hcm predict does); "
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
    ids: Optional[str] = typer.Option(None, "--ids", callback=_id_list, help="Comma list of item ids of --split."),
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
    if clip is not None and (ids or worst):
        raise typer.BadParameter("give a clip or cached items (--ids/--worst), not both")
    if ids and worst:
        raise typer.BadParameter("give --ids or --worst, not both")
    if clip is None and text is not None:
        raise typer.BadParameter("--text goes with a clip; cached items carry their transcript")
    from hcm.apps.explain import ExplainRequest
    from hcm.apps.explain import explain_command as run_explain
    from hcm.core.threads import set_threads

    set_threads(threads)
    request = ExplainRequest(run=run, split=split.value, ids=ids, worst=worst, clip=clip, text=text, out=out,
                             device=device, features=features)
    raise typer.Exit(run_explain(ctx.obj, request))


def _html_file(value: Path) -> Path:
    if value.suffix.lower() not in (".html", ".htm"):
        raise typer.BadParameter(f"{value} must end in .html (the report is one HTML page)")
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; give a file name such as report.html")
    return value


@command("report", "hcm report hcm-work/runs/mosei/20250101-120000-full --out report.html",
         "hcm report RUN_A RUN_B --out compare.html")
def report_command(
    runs: list[Path] = typer.Argument(..., callback=options.run_folders,
                                      help="Run folders (hcm-work/runs/<dataset>/<run>); several are compared."),
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
