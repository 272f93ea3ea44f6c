"""``hcm train`` and ``hcm evaluate`` in a workspace: choose the cache or run, assemble the
settings (the dataset's shipped file plus ``--set`` overrides), then call the training harness.

One ``hcm train`` reads the cache's manifest once, assembles the settings once (here; the trainer
only fills in what the cache decides: input widths, task, class weights) and joins the process
group once, and hands the manifest and the process group to :func:`hcm.training.trainer.train`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from hcm.core.configs import check_value
from hcm.core.errors import UsageError, report_errors
from hcm.core.files import check_writable, read_json, write_json
from hcm.core.provenance import provenance
from hcm.core.threads import set_threads
from hcm.core.workspace import Workspace
from hcm.model.config import ModelConfig
from hcm.training.data import cache_info
from hcm.training.distributed import agreed, setup_distributed
from hcm.training.evaluate import evaluate_run, summarize_seed_runs
from hcm.training.model_source import check_run_config, model_factory
from hcm.training.results import best_epoch
from hcm.training.runs import RunPaths, choose_cache, find_latest_run, new_run_dir
from hcm.training.settings import DatasetFacts, TrainConfig, load_hparams, model_size_for, model_size_settings
from hcm.training.trainer import train

log = logging.getLogger(__name__)
RESUME_SETTINGS = ("skip_nonfinite",)  # settings a resumed run may change (they do not alter its numbers)


@dataclass
class TrainRequest:
    """What ``hcm train`` asks for.

    Args:
        features: the cache (default: the workspace's only cache).
        overrides: settings over the dataset's shipped config: ``{"epochs": 5, "model.dropout": 0.2}``;
            a bare name is looked up in the train settings, then in the model settings.
        seeds: train once per seed and report mean ± std on ``split``.
        resume: continue ``run`` (default: the latest run) from its last checkpoint; of the
            overrides only ``RESUME_SETTINGS`` apply then (``features`` points to a moved cache).
        model_factory: ``"module:Name"`` of another model with HCMNet's batch/output contract.
        model_size: ``auto`` (``small`` for a tiny-profile cache, else ``paper``), ``paper`` or
            ``small`` (configs/model_sizes.json, under the ``overrides``).
        config: a settings file (``{"model": {...}, "train": {...}}``, e.g. the ``best-config.json``
            of ``hcm tune``) applied over the shipped settings and under the ``overrides``.
    """

    features: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] | None = None
    resume: bool = False
    run: Path | None = None
    model_factory: str | None = None
    split: str = "test"
    progress: bool = True
    model_size: str = "auto"
    config: Path | None = None


#: Sections of a ``--config`` file; ``tuned`` (where the values come from) is read by people only.
CONFIG_SECTIONS = ("model", "train")
CONFIG_NOTES = ("tuned",)


def config_overrides(path: Path) -> dict[str, Any]:
    """A ``--config`` file as overrides: ``{"model": {"dropout": 0.2}}`` -> ``{"model.dropout": 0.2}``."""
    data = read_json(path, "settings file")
    unknown = sorted(set(data) - set(CONFIG_SECTIONS) - set(CONFIG_NOTES)) if isinstance(data, dict) else None
    if unknown is None or unknown or not all(isinstance(data.get(s, {}), dict) for s in CONFIG_SECTIONS):
        raise UsageError(f"settings file {path}: expected a JSON object with the sections 'model' and/or 'train' "
                         f"(objects of settings){f'; unknown section(s) {unknown}' if unknown else ''}")
    return {f"{section}.{name}": value for section in CONFIG_SECTIONS for name, value in data.get(section, {}).items()}


def apply_overrides(train: dict[str, Any], model: dict[str, Any], overrides: dict[str, Any],
                    train_keys: set[str], model_keys: set[str]) -> None:
    """Put each override into the train or the model settings (``train.x``/``model.x`` or a bare name)."""
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section not in ("", "train", "model"):
            raise UsageError(f"setting {key!r}: the prefix must be 'train.' or 'model.'")
        if section == "train" or (not section and name in train_keys):
            if name not in train_keys:
                raise UsageError(f"unknown train setting {name!r}; known: {sorted(train_keys)}")
            check_value(TrainConfig, name, value, "train setting")
            train[name] = value
        elif name in model_keys:
            check_value(ModelConfig, name, value, "model setting")
            model[name] = value
        else:
            raise UsageError(f"unknown setting {key!r}; train settings: {sorted(train_keys)}; "
                             f"model settings: {sorted(model_keys)}")


def resolve_settings(dataset: str, overrides: dict[str, Any], profile: str = "paper",
                     size: str = "auto") -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and model settings: the dataset's shipped file (defaults if it has none), the model
    size for the cache's extraction ``profile`` (``auto``: ``small`` for ``tiny`` caches), then
    ``overrides``."""
    try:
        hparams = load_hparams(dataset)
    except FileNotFoundError:
        log.warning("no shipped hyper-parameters for dataset %r; using the defaults", dataset)
        hparams = {"model": {}, "train": {}}
    train, model = dict(hparams["train"]), dict(hparams["model"])
    chosen = model_size_for(size, profile)
    if chosen != "paper":
        log.info("model size %r for a %r-profile cache (choose with --model-size)", chosen, profile)
        sized = model_size_settings(chosen)
        model.update(sized["model"])
        train.update(sized["train"])
    apply_overrides(train, model, overrides, {f.name for f in dataclasses.fields(TrainConfig)},
                    {f.name for f in dataclasses.fields(ModelConfig)})
    return train, model


def train_in_workspace(workspace: Workspace, request: TrainRequest,
                       ask: Callable[[list[Path]], Path] | None = None) -> list[Any]:
    """``hcm train``: pick the cache, assemble the settings, train (once, per seed, or resumed)."""
    if request.resume:
        return [resume_in_workspace(workspace, request)]
    check_writable(workspace.runs, "the runs folder")
    cache = cache_info(choose_cache(workspace.features, request.features, ask))  # the one read of its manifest
    meta = cache.meta
    overrides = {**(config_overrides(request.config) if request.config else {}), **request.overrides}
    train_dict, model_dict = resolve_settings(meta.dataset, overrides, meta.profile, request.model_size)
    model_cfg = ModelConfig.from_dict(model_dict, "settings")
    first = TrainConfig.from_dict(train_dict, "settings")
    d = setup_distributed(first.device)  # the one set-up; under torchrun every rank must use rank 0's folder
    rank = d.rank
    seeds = request.seeds or [first.seed]
    results, suffix = [], len(seeds) > 1
    for seed in seeds:
        cfg = dataclasses.replace(first, seed=seed)
        tail = f"-s{seed}" if suffix else ""
        run = agreed(lambda tail=tail: new_run_dir(workspace.runs, meta.dataset, run_label(model_cfg), tail))
        with removed_on_failure(run, rank):
            started = time.perf_counter()
            results.append(train(cache.directory, run, cfg, model_cfg, model_factory=request.model_factory,
                                 progress=request.progress, cache=cache, dist_setup=d))
        if rank == 0:
            print(train_summary(results[-1], time.perf_counter() - started, cfg.epochs))
    if suffix and rank == 0:
        out = new_run_dir(workspace.runs, meta.dataset, run_label(model_cfg), "-seeds") / "summary.json"
        summarize_seed_runs([r.run_dir for r in results], request.split, out)
    return results


def run_label(model_cfg: ModelConfig) -> str:
    """The variant, and the modalities when not all three: ``full``, ``full-va``, ``no-acl-tv``."""
    used = "".join(name[0] for name in model_cfg.modality_names)
    return model_cfg.variant if used == "tva" else f"{model_cfg.variant}-{used}"


def resume_in_workspace(workspace: Workspace, request: TrainRequest) -> Any:
    """``hcm train --resume``: the run's own settings (``RESUME_SETTINGS`` may change), its own cache;
    ``--epochs`` beyond the run's extends it (:func:`extend_run`)."""
    run = Path(request.run) if request.run else find_latest_run(workspace.runs)
    config = read_json(RunPaths(run).config, "run config")
    check_writable(run, "the run folder")
    epochs = next((v for k, v in request.overrides.items() if k in ("epochs", "train.epochs")), None)
    ignored = sorted(k for k in request.overrides if k not in RESUME_SETTINGS and k not in ("epochs", "train.epochs"))
    if ignored:
        log.warning("--resume continues with the run's own settings; ignoring %s", ignored)
    if epochs is not None and epochs != config["train"]["epochs"]:
        config = extend_run(RunPaths(run), config, int(epochs))
    train_cfg = {**config["train"], **{k: v for k, v in request.overrides.items() if k in RESUME_SETTINGS}}
    cache = request.features or config["cache"]
    recorded = check_run_config(config, RunPaths(run).config)["model_factory"]
    if request.model_factory != recorded:  # the user did not name it: only hcm's models (refused otherwise)
        model_factory(recorded, False, RunPaths(run).config, hint=f"pass --model-factory {recorded} with --resume")
    factory = recorded  # the name as the checkpoint records it
    started = time.perf_counter()
    result = train(cache, run, TrainConfig.from_dict(train_cfg), ModelConfig.from_saved(config["model"]),
                   facts=DatasetFacts.from_dict(config["facts"]), model_factory=factory,
                   resume=True, progress=request.progress)
    print(train_summary(result, time.perf_counter() - started, train_cfg["epochs"]))
    return result


def extend_run(paths: RunPaths, config: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Raise a run's epochs to ``epochs`` (``hcm train --resume --epochs N``): config.json records the
    new number and the extension; the learning-rate schedule is stretched to the new length."""
    before = config["train"]["epochs"]
    done, stopped_early = epochs_done(paths, config)
    if epochs < before:
        raise UsageError(f"--epochs {epochs} is below the {before} epochs of run {paths.root}; a run can only be "
                         f"extended. Evaluate an earlier epoch's checkpoint or start a new run with `hcm train`")
    if stopped_early:
        raise UsageError(f"run {paths.root} stopped early after epoch {done} (no better valid "
                         f"{config['key_metric']} for {config['train']['patience']} epochs); more epochs would stop "
                         f"again at once. Start a new run with --epochs {epochs} and a larger --set patience=N")
    extended = {**config, "train": {**config["train"], "epochs": epochs},
                "extended": [*config.get("extended", []), {"from_epochs": before, "to_epochs": epochs,
                                                           "at_epoch": done, **provenance()}]}
    write_json(paths.config, extended)
    scheduler = config["train"].get("scheduler")
    log.warning("extending run %s from %d to %d epochs (%d done); the %s learning-rate schedule is stretched to %d "
                "epochs", paths.root, before, epochs, done, scheduler, epochs)
    return extended


def epochs_done(paths: RunPaths, config: dict[str, Any]) -> tuple[int, bool]:
    """How many epochs ``metrics.csv`` records, and whether early stopping ended the run."""
    best, done = best_epoch(paths.metrics_csv)  # epochs are numbered 1, 2, ... in their rows
    patience = int(config["train"].get("patience") or 0)
    since_best = done - (best or 0)
    return done, patience > 0 and since_best >= patience and done < config["train"]["epochs"]


def train_summary(result: Any, seconds: float, planned: int | None = None) -> str:
    """The closing words of ``hcm train``: where the run is, its best epoch and score, the next command."""
    planned = planned or result.epochs_run
    how = (f"early stopping ended it before the {planned} planned epochs: no better valid {result.key_metric} "
           f"for --set patience epochs" if result.stopped_early else f"all {planned} planned epochs ran")
    return (f"run {result.run_dir}\n"
            f"  best epoch {result.best_epoch} of {result.epochs_run} ({how}): valid {result.key_metric} "
            f"{result.best_value:.4f}\n"
            f"  wall time {seconds:.1f} s; per-epoch log {RunPaths(result.run_dir).train_log}\n"
            f"  next: hcm evaluate --run {result.run_dir}")


@contextmanager
def removed_on_failure(run: Path, rank: int) -> Iterator[None]:
    """A new run that fails before its first checkpoint leaves no folder behind (rank 0 removes it)."""
    try:
        yield
    except BaseException:
        if rank == 0 and run.is_dir() and not RunPaths(run).last.is_file():
            shutil.rmtree(run, ignore_errors=True)
            log.warning("removed %s: the run failed before its first checkpoint", run)
        raise


def evaluate_in_workspace(workspace: Workspace, run: Path | None = None, split: str = "test",
                          features: Path | None = None, tsne: bool = False, device: str = "auto",
                          as_json: bool = False, trust_model_code: bool = False,
                          score: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """``hcm evaluate``: the given run (default: the latest in the workspace), its best checkpoint.

    ``as_json``: the table goes to stderr and stdout gets the report (metrics.json) alone.
    ``trust_model_code``: import a model factory outside hcm's registry that the run config names.
    ``score``: what scores the run, called as :func:`~hcm.training.evaluate.evaluate_run` is but
    without ``tsne`` (``hcm evaluate --missing/--noise`` passes its robustness run); default
    :func:`~hcm.training.evaluate.evaluate_run`."""
    from rich.console import Console

    score = score or functools.partial(evaluate_run, tsne=tsne)
    chosen = Path(run) if run is not None else find_latest_run(workspace.runs)
    report = score(chosen, split, cache_dir=features, device=device,
                   console=Console(stderr=True) if as_json else None, trust_model_code=trust_model_code)
    if as_json:
        print(json.dumps(report, indent=1, default=str))
    return report


def ask_cache(caches: list[Path]) -> Path:
    """Ask on the terminal which of several caches to train on."""
    from rich.console import Console
    from rich.prompt import IntPrompt

    console = Console(stderr=True)
    console.print("The workspace holds several feature caches:")
    for n, cache in enumerate(caches, start=1):
        console.print(f"  [bold]{n}[/] {cache}")
    choice = IntPrompt.ask("Train on which?", choices=[str(n) for n in range(1, len(caches) + 1)], console=console)
    return caches[choice - 1]


def train_command(workspace: Workspace, request: TrainRequest, interactive: bool = False,
                  threads: int | None = None) -> int:
    """``hcm train`` with its errors reported as messages; returns the exit status.

    ``threads``: torch's CPU threads (default: the CPUs this process may use, see ``hcm.core.threads``).
    """
    def work() -> None:
        set_threads(threads)
        train_in_workspace(workspace, request, ask_cache if interactive else None)

    return report_errors(work)


def evaluate_command(workspace: Workspace, run: Path | None, split: str, features: Path | None, tsne: bool,
                     device: str, threads: int | None = None, as_json: bool = False,
                     trust_model_code: bool = False, score: Callable[..., dict[str, Any]] | None = None) -> int:
    """``hcm evaluate`` with its errors reported as messages; returns the exit status (``score``: see
    :func:`evaluate_in_workspace`)."""
    def work() -> None:
        set_threads(threads)
        evaluate_in_workspace(workspace, run, split, features, tsne, device, as_json, trust_model_code, score)

    return report_errors(work)
