"""``hcm quickstart`` (``make demo``): the whole of hcm on a synthetic corpus, offline, in minutes.

    1. sample    a synthetic CMU-MOSEI-layout corpus (``hcm.pipeline.sample.make_sample``)
    2. extract   features with the ``tiny`` profile (``hcm.pipeline.extract.extract``)
    3. train     HCMNet on all three modalities, and the same model on video + audio only
    4. evaluate  both on the test split, beside the trivial baselines (train mean, majority class)

Settings come from ``configs/quickstart.json`` (corpus size and seed, extraction profile, and
train/model settings laid over ``configs/hcmnet/sample.json``). The corpus lives in
``<workspace>/data/quickstart-mosei`` and its cache in ``<workspace>/features/sample/quickstart``;
a re-run reuses both (extraction resumes shard by shard) and trains new runs. When the configured
corpus size or seed changes, the corpus is regenerated and its stale cache removed.

It runs both stages, as an ``hcm.apps`` module may (stage one: ``hcm.pipeline``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hcm.apps.ablate import COLUMNS, format_cell
from hcm.apps.train import TrainRequest, train_in_workspace
from hcm.cache.schema import RecipeMismatch
from hcm.core.configs import configs_dir
from hcm.core.errors import report_errors
from hcm.core.files import write_json
from hcm.core.tables import UNITS, print_table
from hcm.core.workspace import Workspace
from hcm.training import metrics as M
from hcm.training.evaluate import evaluate_run

CORPUS_FOLDER = "quickstart-mosei"
CACHE_FOLDER = "quickstart"
DATASET = "sample"  # the stage-one adapter that reads a synthetic MOSEI-layout corpus
CLEAR_MAE_RATIO = 0.95  # "clearly better": an MAE at most 95 % of the one compared with
CLEAR_ACC_POINTS = 0.05  # "clearly better": an Acc-2 at least 5 points above the one compared with


@dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart runs (``configs/quickstart.json``)."""

    n: int = 300  # utterances of the synthetic corpus (half train, a quarter valid, a quarter test)
    seed: int = 0  # corpus seed: the same seed writes the same corpus
    profile: str = "tiny"  # extraction profile (tiny: small random encoders, no download)
    shard_size: int = 50  # utterances per cache shard, the unit extraction resumes by
    batch_size: int = 16  # utterances per encoder batch during extraction
    compare_modalities: str = "va"  # modality subset trained beside the full model; "" = none
    model: dict[str, Any] = field(default_factory=dict)  # model settings over configs/hcmnet/sample.json
    train: dict[str, Any] = field(default_factory=dict)  # train settings over configs/hcmnet/sample.json

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> QuickstartConfig:
        unknown = sorted(set(data) - {"sample", "extract", "compare_modalities", "model", "train"})
        if unknown:
            raise ValueError(f"unknown section(s) {unknown} in {source}; known: sample, extract, "
                             f"compare_modalities, model, train")
        sample, extract = dict(data.get("sample", {})), dict(data.get("extract", {}))
        if sample.pop("dataset", "mosei") != "mosei":
            raise ValueError(f"{source}: the quickstart corpus is the MOSEI-layout sample (sample.dataset 'mosei')")
        try:
            return cls(**sample, **extract, compare_modalities=data.get("compare_modalities", ""),
                       model=dict(data.get("model", {})), train=dict(data.get("train", {})))
        except TypeError as error:
            raise ValueError(f"bad quickstart setting in {source}: {error}") from error

    def overrides(self, modalities: str | None = None) -> dict[str, Any]:
        """The settings as ``hcm train`` overrides (``train.x`` / ``model.x``)."""
        out = {f"train.{k}": v for k, v in self.train.items()} | {f"model.{k}": v for k, v in self.model.items()}
        if modalities:
            out["model.modalities"] = modalities
        return out


def load_quickstart_config(path: Path | None = None) -> QuickstartConfig:
    """Read ``configs/quickstart.json`` (or ``path``)."""
    path = Path(path) if path is not None else configs_dir() / "quickstart.json"
    if not path.is_file():
        raise FileNotFoundError(f"quickstart settings {path} do not exist; reinstall hcm or pass a settings file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"quickstart settings {path} are not valid JSON: {error}") from error
    return QuickstartConfig.from_dict(data, str(path))


# --------------------------------------------------------------------------- steps


def ensure_sample(workspace: Workspace, cfg: QuickstartConfig, progress: bool, console: Console) -> Path:
    """The quickstart corpus: reused when it was written with the same size and seed, else (re)made."""
    from hcm.pipeline.sample import make_sample
    from hcm.pipeline.sample.registry import MARKER

    root = workspace.data / CORPUS_FOLDER
    marker = root / MARKER
    if marker.is_file():
        written = json.loads(marker.read_text(encoding="utf-8"))
        if (written.get("dataset"), written.get("n"), written.get("seed")) == ("mosei", cfg.n, cfg.seed):
            console.print(f"reusing the sample corpus {root} ({cfg.n} utterances, seed {cfg.seed})")
            return root
        console.print(f"the corpus in {root} has n={written.get('n')}, seed={written.get('seed')}; "
                      f"writing n={cfg.n}, seed={cfg.seed} and dropping its stale cache")
        shutil.rmtree(cache_dir(workspace), ignore_errors=True)
    summary = make_sample("mosei", root, cfg.n, cfg.seed, progress=progress)
    console.print(f"wrote {summary.total} utterances to {root} "
                  f"({', '.join(f'{k} {v}' for k, v in summary.counts.items())}; {summary.seconds:.1f} s)")
    return root


def cache_dir(workspace: Workspace) -> Path:
    return workspace.features / DATASET / CACHE_FOLDER


def extract_features(workspace: Workspace, corpus: Path, cfg: QuickstartConfig, progress: bool,
                     console: Console) -> Path:
    """Extract (or finish extracting) the corpus into the quickstart cache."""
    from hcm.pipeline.extract import extract

    out = cache_dir(workspace)

    def run() -> Any:
        return extract(DATASET, data_root=corpus, out=out, profile=cfg.profile, workspace=workspace,
                       batch_size=cfg.batch_size, shard_size=cfg.shard_size, progress=progress)

    try:
        summary = run()
    except RecipeMismatch:  # the quickstart's own cache, made by another hcm version or settings
        console.print(f"the cache in {out} was extracted with other settings; extracting it again")
        shutil.rmtree(out)
        summary = run()
    console.print(summary.format())
    return out


def train_pair(workspace: Workspace, cache: Path, cfg: QuickstartConfig, progress: bool,
               console: Console) -> dict[str, Path]:
    """The comparison run first, then the full model, so the full model is the workspace's latest run."""
    runs = {}
    for modalities in [m for m in (cfg.compare_modalities, "tva") if m]:
        console.print(f"training HCMNet on modalities {modalities!r}")
        request = TrainRequest(features=cache, overrides=cfg.overrides(modalities), progress=progress)
        runs[modalities] = train_in_workspace(workspace, request)[0].run_dir
    return runs


def evaluate_pair(runs: dict[str, Path], console: Console) -> dict[str, dict[str, Any]]:
    """Test-split reports; the full model's table (with its baseline) is printed."""

    return {m: evaluate_run(run, "test", console=console if m == "tva" else Console(quiet=True))
            for m, run in runs.items()}


# --------------------------------------------------------------------------- verdict


def checks(reports: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    """Whether the full model clearly beats the baselines (MAE, Acc-2) and the comparison model (MAE).

    Clearly: an MAE at most ``CLEAR_MAE_RATIO`` times the other, an Acc-2 ``CLEAR_ACC_POINTS`` higher.
    """
    full = reports["tva"]["metrics"]
    base = reports["tva"]["baseline"]
    out = [(f"MAE {full['mae']:.3f} clearly below the train-mean baseline {base['mae']:.3f}",
            full["mae"] <= CLEAR_MAE_RATIO * base["mae"]),
           (f"Acc-2 {full['acc2_non0']:.2%} clearly above the majority-class baseline {base['acc2_non0']:.2%}",
            full["acc2_non0"] >= base["acc2_non0"] + CLEAR_ACC_POINTS)]
    for modalities, report in reports.items():
        if modalities != "tva":
            other = report["metrics"]["mae"]
            out.append((f"MAE {full['mae']:.3f} (T+V+A) clearly below {other:.3f} ({modalities.upper()})",
                        full["mae"] <= CLEAR_MAE_RATIO * other))
    return out


def summary_table(reports: dict[str, dict[str, Any]], seconds: float) -> Table:
    columns = COLUMNS[M.REGRESSION]
    table = Table(title=f"quickstart: sample test split ({reports['tva']['items']} clips, {seconds:.0f} s in all)",
                  caption=UNITS)
    table.add_column("Method", no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for modalities, report in sorted(reports.items(), key=lambda pair: pair[0] != "tva"):
        name = "+".join(c.upper() for c in modalities)
        table.add_row(f"HCMNet {name}", *[format_cell(k, report["metrics"].get(k)) for k, _ in columns])
    table.add_row("baseline", *[format_cell(k, reports["tva"]["baseline"].get(k)) for k, _ in columns])
    return table


def quickstart(workspace: Workspace, cfg: QuickstartConfig | None = None, progress: bool = True,
               console: Console | None = None) -> dict[str, Any]:
    """Sample -> extract -> train -> evaluate; print and return the test numbers and the checks."""
    console = console or Console()
    cfg = cfg or load_quickstart_config()
    started, timings = time.perf_counter(), {}

    def step(number: int, title: str) -> None:
        timings[title] = time.perf_counter()
        console.rule(f"[bold]{number}/4 {title}")

    step(1, "sample corpus")
    corpus = ensure_sample(workspace, cfg, progress, console)
    step(2, "extract features")
    cache = extract_features(workspace, corpus, cfg, progress, console)
    step(3, "train")
    runs = train_pair(workspace, cache, cfg, progress, console)
    step(4, "evaluate")
    reports = evaluate_pair(runs, console)
    seconds = time.perf_counter() - started
    steps = list(timings) + ["end"]
    stamps = list(timings.values()) + [started + seconds]
    result = {"seconds": seconds, "step_seconds": {s: stamps[i + 1] - stamps[i] for i, s in enumerate(steps[:-1])},
              "runs": {m: str(r) for m, r in runs.items()}, "cache": str(cache),
              "test": {m: {"metrics": r["metrics"], "baseline": r["baseline"]} for m, r in reports.items()},
              "checks": [{"check": text, "passed": ok} for text, ok in checks(reports)]}
    write_json(runs["tva"] / "quickstart.json", result)
    print_table(console, summary_table(reports, seconds))
    for entry in result["checks"]:
        console.print(("[green]✓[/] " if entry["passed"] else "[red]✗[/] ") + entry["check"], highlight=False)
    console.print(f"next: hcm predict <clip.mp4> --text \"...\" uses run {runs['tva']}")
    return result


#: What ``hcm quickstart`` says on Ctrl-C (during training, the trainer says where it stopped).
INTERRUPTED = ("interrupted; run hcm quickstart again to continue: it reuses the corpus and the complete feature "
               "shards")


def quickstart_command(workspace: Workspace, config: Path | None = None, progress: bool = True) -> int:
    """``hcm quickstart`` with known errors printed as one message; returns the exit status."""
    from hcm.pipeline.extract import ExtractionError

    return report_errors(lambda: quickstart(workspace, load_quickstart_config(config), progress=progress),
                         also=(ExtractionError,), interrupted=INTERRUPTED)
