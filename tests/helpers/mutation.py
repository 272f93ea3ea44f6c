"""``make mutate``: mutation testing (mutmut) of the modules that decide hcm's results, each module
against its own tests only, and a survivors report.

The repository root is the package ``hcm``, a layout mutmut cannot map to import names, so each
module runs in a staging folder ``build/mutate/<module>/`` that holds the tree as ``hcm/`` beside
``tests/`` and a ``setup.cfg`` with the ``[mutmut]`` section for that module: mutmut mutates
``hcm/<module>`` there and runs only the tests ``MODULES`` maps it to. Results go to
``build/mutate/survivors.md`` (score per module, each surviving mutant's diff) and
``build/mutate/scores.json``. benchmarks/RESULTS.md keeps the measured scores and the survivors judged
equivalent.

    python tests/helpers/mutation.py                      # every module of MODULES (hours on 2 cores)
    python tests/helpers/mutation.py training/metrics.py  # one module
    python tests/helpers/mutation.py --recheck core/pickledata.py NAME...  # survivors, applied to the source

mutmut switches a mutant on inside the function it mutates, at call time; code that runs once at
import (handler factories, tables built at module level) is never called while the tests run, so
its mutants survive whatever the tests check. ``--recheck`` takes such survivors of the module's
last run, writes each into the staged source in turn and runs the module's tests (today's copies)
against it: a failing run kills it.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "mutate"
# module (path in the repository) -> the tests that check it
MODULES: dict[str, list[str]] = {
    "training/metrics.py": ["tests/training/test_metrics.py", "tests/training/test_mmsa_metrics.py",
                            "tests/training/test_metrics_edges.py"],
    "core/numpy_pickle.py": ["tests/core/test_numpy_pickle.py", "tests/core/test_pickledata.py",
                             "tests/core/test_fuzz_loaders.py",
                             "tests/pipeline/test_import_mmsa.py"],
    "core/pickledata.py": ["tests/core/test_pickledata_machine.py", "tests/core/test_pickledata.py",
                           "tests/core/test_fuzz_loaders.py",
                           "tests/pipeline/test_import_mmsa.py"],
    "core/torch_archive.py": ["tests/core/test_torch_archive_parts.py", "tests/core/test_torch_archive.py",
                              "tests/core/test_fuzz_loaders.py"],
    "model/losses.py": ["tests/model/test_losses_edges.py", "tests/model/test_losses.py",
                        "tests/model/test_objective_wiring.py"],
    # the readings (Eq. 15/17 and the departures of docs/readings): where they act
    "model/composition.py": ["tests/model/test_composition.py", "tests/model/test_readings.py",
                             "tests/model/test_hcmnet.py"],
    "model/nodes.py": ["tests/model/test_nodes.py", "tests/model/test_readings.py", "tests/model/test_hcmnet.py",
                       "tests/model/test_hcmnet_wiring.py"],
    "model/hcmnet.py": ["tests/model/test_hcmnet_wiring.py", "tests/model/test_hcmnet.py",
                        "tests/model/test_objective_wiring.py", "tests/model/test_readings.py"],
    "model/ot/dense.py": ["tests/model/test_ot_dense.py", "tests/model/test_ot.py", "tests/model/test_ot_graphs.py"],
    "model/ot/api.py": ["tests/model/test_ot_api.py", "tests/model/test_ot.py"],
    "model/ot/problem.py": ["tests/model/test_ot_problem.py", "tests/model/test_ot.py"],
    "model/ot/fused_cpu.py": ["tests/model/test_ot_fused.py"],
    "training/evaluate.py": ["tests/training/test_evaluate.py", "tests/training/test_evaluate_plots.py",
                             "tests/training/test_plot_titles.py", "tests/training/test_model_source.py"],
    "training/checkpoints.py": ["tests/training/test_checkpoint_state.py", "tests/training/test_checkpoints.py",
                                "tests/training/test_trainer_faults.py"],
    "training/faults.py": ["tests/training/test_faults.py", "tests/training/test_trainer_faults.py"],  # resume
    "training/trainer.py": ["tests/training/test_trainer_parts.py", "tests/training/test_trainer.py",
                            "tests/training/test_trainer_faults.py"],
    "cache/inspect.py": ["tests/cache/test_cache_inspect.py", "tests/cache/test_cache_faults.py",
                         "tests/cache/test_cache_cli.py"],  # verification
    "pipeline/datasets/splits.py": ["tests/pipeline/test_splits.py", "tests/pipeline/test_split_file.py",
                                    "tests/pipeline/test_datasets_custom.py"],
}
# tests of MODULES left out of a module's run: too slow to repeat for each mutant, and what they check
# of that module is checked by its fast tests (each entry says by which)
DESELECT: dict[str, list[str]] = {
    # an extraction (over a minute on 2 cores); the split file's recipe entry: tests/pipeline/test_splits.py
    "pipeline/datasets/splits.py": [
        "tests/pipeline/test_split_file.py::test_extract_records_the_split_file_and_refuses_another"],
    # KeOps compiling its kernel (a minute); the values of each backend against POT:
    # test_dense_backends_match_pot and the tests beside it in tests/model/test_ot.py
    "model/ot/problem.py": ["tests/model/test_ot.py::test_keops_backend"],
    "model/ot/api.py": ["tests/model/test_ot.py::test_keops_backend"],
    "model/ot/dense.py": ["tests/model/test_ot.py::test_keops_backend"],
    # a training run stopped by SIGTERM and resumed (12 s); saving and restoring a loop, its RNG
    # states and loss sums: tests/training/test_checkpoint_state.py
    "training/checkpoints.py": [
        "tests/training/test_trainer_faults.py::test_sigterm_mid_epoch_checkpoints_and_resumes_to_the_same_metrics"],
    # the same run (5-12 s); the stop request, its message and exit code: tests/training/test_faults.py, and
    # test_sigint_exits_with_130 beside it
    "training/faults.py": [
        "tests/training/test_trainer_faults.py::test_sigterm_mid_epoch_checkpoints_and_resumes_to_the_same_metrics"],
    # whole runs (2-11 s each) of tests/training/test_trainer_parts.py's parts:
    # HCMNet with dropout resumed (11 s) and the SIGTERM run: an epoch stopped mid-way, resumed from
    # last.pt with dropout drawing from the restored RNG, ends as the uninterrupted one
    # (test_an_epoch_stopped_mid_way_and_resumed_ends_as_an_uninterrupted_one); the evaluation
    # baseline (evaluate.py's own): the run config evaluation reads (test_the_run_config_holds_what_...)
    "training/trainer.py": [
        "tests/training/test_trainer.py::test_resume_with_hcmnet_and_dropout_repeats_the_uninterrupted_run",
        "tests/training/test_trainer_faults.py::test_sigterm_mid_epoch_checkpoints_and_resumes_to_the_same_metrics",
        "tests/training/test_trainer.py::test_evaluation_baseline_is_fitted_on_the_train_split_only"],
}
SKIP = (".git", ".venv", "build", "mutants", "hcm-work", "tests", "__pycache__", ".pytest_cache", ".ruff_cache")


def staging(module: str) -> Path:
    return BUILD / module.replace("/", "-").removesuffix(".py")


def test_args(module: str) -> list[str]:
    """The pytest arguments that select ``module``'s tests."""
    return [*MODULES[module], *(f"--deselect={test}" for test in DESELECT.get(module, []))]


def stage(module: str) -> Path:
    """``build/mutate/<module>/`` with ``hcm/`` (the tree), ``tests/`` and a setup.cfg for ``module``."""
    folder = staging(module)
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(REPO, folder / "hcm", ignore=lambda _, names: [n for n in names if n in SKIP])
    shutil.copytree(REPO / "tests", folder / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "setup.cfg")
    staged = configparser.ConfigParser(interpolation=None)
    staged["tool:pytest"] = dict(config["tool:pytest"])
    staged["mutmut"] = {
        "source_paths": "hcm",
        "only_mutate": f"hcm/{module}",
        "pytest_add_cli_args_test_selection": "\n" + "\n".join(test_args(module)),
        "pytest_add_cli_args": "\n-p\nno:randomly\n-p\nno:cacheprovider\n-q",
        "process_isolation": "forkserver",
    }
    with open(folder / "setup.cfg", "w") as handle:
        staged.write(handle)
    return folder


def python(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HCM_FIXTURES_DIR": str(REPO.parent / "shared" / "fixtures"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True)


def mutmut(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return python(folder, "-m", "mutmut", *args)


def recheck(module: str, names: list[str]) -> dict[str, str]:
    """Each mutant of ``names`` written into the staged source of ``module`` in turn, and the verdict
    of the module's tests: ``killed`` (a test fails, or the tree no longer imports) or ``survived``."""
    folder = staging(module)
    if not (folder / "mutants").is_dir():
        raise SystemExit(f"{module} has no run to recheck in {folder}; run it first")
    shutil.rmtree(folder / "tests")
    shutil.copytree(REPO / "tests", folder / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    source = folder / "hcm" / module
    original = source.read_text()
    verdicts = {}
    try:
        for name in names:
            applied = mutmut(folder, "apply", name)
            if applied.returncode != 0 or source.read_text() == original:
                raise SystemExit(f"mutmut could not apply {name}: {applied.stdout}{applied.stderr}")
            done = python(folder, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                          *test_args(module))
            if done.returncode in (4, 5):  # a usage error, or no test collected: no verdict
                raise SystemExit(f"pytest could not run the tests of {module}:\n{done.stdout[-2000:]}")
            verdicts[name] = "survived" if done.returncode == 0 else "killed"
            source.write_text(original)
            print(f"{name}: {verdicts[name]}", flush=True)
    finally:
        source.write_text(original)
    return verdicts


def run_module(module: str, children: int) -> dict:
    """Mutate ``module``; its counts and each survivor's diff."""
    folder = stage(module)
    done = mutmut(folder, "run", "--max-children", str(children))
    (folder / "mutmut-run.log").write_text(done.stdout + done.stderr)
    if not (folder / "mutants").is_dir():
        raise SystemExit(f"mutmut did not run on {module}; see {folder / 'mutmut-run.log'}")
    mutmut(folder, "export-cicd-stats")
    stats = json.loads((folder / "mutants" / "mutmut-cicd-stats.json").read_text())
    listed = mutmut(folder, "results").stdout.splitlines()
    survivors = [line.strip().split(":")[0] for line in listed if line.strip().endswith(": survived")]
    diffs = {name: mutmut(folder, "show", name).stdout for name in survivors}
    return {"module": module, "stats": stats, "survivors": diffs}


def score(stats: dict) -> float:
    """Killed (also by timeout) out of the mutants a test reached."""
    reached = stats["killed"] + stats["timeout"] + stats["survived"] + stats["suspicious"]
    return 100.0 * (stats["killed"] + stats["timeout"]) / reached if reached else float("nan")


def report(results: list[dict]) -> str:
    lines = ["# Mutation testing: survivors", "", "| module | mutants | killed | survived | no tests | score |",
             "| --- | --- | --- | --- | --- | --- |"]
    for result in results:
        s = result["stats"]
        lines.append(f"| {result['module']} | {s['total']} | {s['killed'] + s['timeout']} | {s['survived']} | "
                     f"{s['no_tests']} | {score(s):.1f} % |")
    for result in results:
        for name, diff in result["survivors"].items():
            lines += ["", f"## {name}", "", "```diff", diff.strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--recheck"]:
        if len(argv) < 3 or argv[1] not in MODULES:
            print(f"usage: --recheck MODULE MUTANT...; MODULE one of {sorted(MODULES)}", file=sys.stderr)
            return 2
        verdicts = recheck(argv[1], argv[2:])
        print(f"{sum(v == 'killed' for v in verdicts.values())} of {len(verdicts)} killed")
        return 0
    modules = argv or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"not in MODULES: {unknown}; choose from {sorted(MODULES)}", file=sys.stderr)
        return 2
    children = int(os.environ.get("MUTATE_CHILDREN", "2"))
    results = [run_module(module, children) for module in modules]
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / "survivors.md").write_text(report(results))
    (BUILD / "scores.json").write_text(json.dumps(
        {r["module"]: {**r["stats"], "score": score(r["stats"])} for r in results}, indent=2))
    print(report(results).split("\n\n## ")[0])
    print(f"wrote {BUILD / 'survivors.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
