"""Every option of every command, driven with a valid value on small data, its effect checked.

``ROWS`` has one row per (command, option) that ``--help`` lists. A row is either a check
(tests/helpers/option_checks_*.py; its arguments are the fixtures it needs, the session ones of
tests/cli/conftest.py: tiny caches, trained runs, a small sample corpus and MMSA file, shared by all
rows so that the table costs minutes) or the id of the test elsewhere that drives the option
(``tests/...py::test_name``; the meta-test checks that it exists). A check shared by several rows
runs once.
``test_every_option_in_help_has_a_row`` fails naming an option that ``--help`` lists without a row.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from cli_probe import command_paths
from option_checks_data import (
    check_extract_custom_facts,
    check_extract_device,
    check_extract_shards,
    check_extract_spacy_model,
    check_extract_splits,
    check_extract_strict,
    check_import_aligned_rows,
    check_import_batch_size,
    check_import_csd,
    check_import_device,
    check_import_out,
    check_import_shard_size,
    check_import_spacy_model,
    check_import_trust_pickle,
    check_import_weights,
    check_text_model,
    check_weight_option,
    check_weights_dir,
)
from option_checks_runs import (
    check_ablate_seeds,
    check_evaluate_device,
    check_evaluate_features,
    check_evaluate_split,
    check_evaluate_threads,
    check_explain,
    check_quickstart_threads,
    check_reproduce,
    check_runs_dataset,
    check_train_config,
    check_train_features,
    check_train_modalities,
    check_train_model_size,
    check_train_ot_backend,
    check_train_seeds,
    check_train_set,
    check_train_setting,
    check_train_threads,
    check_train_variant,
    check_tune,
)
from typer.testing import CliRunner

from hcm.cli import app

runner = CliRunner()


REPO = Path(__file__).resolve().parents[2]


runner = CliRunner()


ABLATE = "tests/apps/test_ablate.py::test_ablate_writes_the_table"


ABLATE_READINGS = "tests/apps/test_ablate.py::test_ablate_readings_over_two_caches"


SUMMARIES = "tests/cli/test_cli_summaries.py::test_train_summary_log_and_evaluate_json"


EXTRACT = "tests/cli/test_cli_extract.py::test_extract_sample_then_resume"


EXTRACT_PRECISION = "tests/cli/test_cli_extract.py::test_extract_precision_option"


MOSI_IMPORT = "tests/cli/test_cli_import_mmsa.py::test_mosi_import_train_evaluate_ablate"


PREDICT_BATCH = "tests/apps/test_predict.py::test_batch_from_clips_folder_and_csv_with_context"


PREDICT_CONTEXT = "tests/apps/test_predict.py::test_context_of_one_clip_reaches_the_text_encoder"


PAPER_PATH = "tests/cli/test_cli_paper_path.py::test_paper_profile_extract_train_evaluate_predict"


REPRODUCE = "tests/apps/test_reproduce.py::test_reproduce_writes_the_comparison_and_finds_its_runs_again"


SAMPLE = "tests/pipeline/test_sample_cli.py::test_sample_writes_into_the_workspace_and_prints_a_summary"


SAMPLE_ALL = "tests/pipeline/test_sample_cli.py::test_sample_all_writes_every_corpus_under_out"


TUNE = "tests/apps/test_tune.py::test_search_confirm_and_train_the_best"


TUNE_WORKERS = "tests/apps/test_tune.py::test_two_worker_processes_share_one_sqlite_study"


EXPLAIN_IDS = "tests/apps/test_explain.py::test_explain_ids_writes_json_and_png_whose_plans_meet_their_marginals"
SERVE = "tests/cli/test_cli_serve.py::test_hcm_serve_prints_its_address_answers_and_stops_on_ctrl_c"
SERVE_OPTIONS = "tests/cli/test_cli_serve.py::test_hcm_serve_with_host_token_and_upload_limit"
RESUME = "tests/cli/test_cli_train_faults.py::test_ctrl_c_mid_epoch_exits_130_and_prints_the_resume_command"


def named(check, name: str):
    check.__name__ = name
    return check


def train_setting(key: str):
    return named(lambda trained: check_train_setting(trained, key), f"check_train_setting[{key}]")


def weight(check, option: str):
    return named(lambda space, corpus, no_weight_caches: check(space, corpus, no_weight_caches, option),
                 f"{check.__name__}[{option}]")


def import_weight(option: str):
    def check(space, mmsa_file, no_weight_caches):
        check_import_weights(space, mmsa_file, no_weight_caches, option)

    return named(check, f"check_import_weights[{option}]")


ROWS = {
    ("ablate", "--features"): ABLATE_READINGS, ("ablate", "--variants"): ABLATE, ("ablate", "--modalities"): ABLATE,
    ("ablate", "--readings"): ABLATE_READINGS, ("ablate", "--switches"): ABLATE_READINGS,
    ("ablate", "--epochs"): ABLATE, ("ablate", "--seeds"): check_ablate_seeds, ("ablate", "--set"): ABLATE,
    ("ablate", "--quiet"): ABLATE,
    ("cache info", "--json"): "tests/cache/test_cache_cli.py::test_info_table_and_json",
    ("cache info", "--verbose"):
        "tests/cache/test_cache_faults.py::test_explicit_masked_reasons_and_info_counts_per_reason_and_split",
    ("evaluate", "--run"): SUMMARIES, ("evaluate", "--split"): check_evaluate_split,
    ("evaluate", "--features"): check_evaluate_features,
    ("evaluate", "--tsne"): "tests/cli/test_cli_train.py::test_train_then_evaluate_the_latest_run",
    ("evaluate", "--json"): SUMMARIES, ("evaluate", "--device"): check_evaluate_device,
    ("evaluate", "--threads"): check_evaluate_threads,
    ("evaluate", "--trust-model-code"):
        "tests/training/test_model_source.py::test_evaluate_refuses_the_run_and_imports_nothing",
    ("evaluate", "--missing"): "tests/apps/test_robustness_cli.py::test_missing_and_noise_rows_and_files",
    ("evaluate", "--noise"): "tests/apps/test_robustness_cli.py::test_missing_and_noise_rows_and_files",
    ("explain", "--text"): "tests/apps/test_predict.py::test_explain_a_clip_predicts_as_predict_does",
    ("explain", "--run"): check_explain, ("explain", "--split"): check_explain,
    ("explain", "--ids"): EXPLAIN_IDS,
    ("explain", "--worst"): "tests/apps/test_explain.py::test_worst_picks_the_largest_errors_of_the_evaluation",
    ("explain", "--features"): check_explain,
    ("explain", "--out"): EXPLAIN_IDS,
    ("explain", "--device"): check_explain, ("explain", "--threads"): check_explain,
    ("extract", "--dataset"): EXTRACT_PRECISION, ("extract", "--data-root"): EXTRACT_PRECISION,
    ("extract", "--out"): EXTRACT_PRECISION, ("extract", "--profile"): EXTRACT_PRECISION,
    ("extract", "--device"): check_extract_device, ("extract", "--precision"): EXTRACT_PRECISION,
    ("extract", "--weights-dir"): check_weights_dir, ("extract", "--text-model"): check_text_model,
    ("extract", "--efficientnet-weights"): weight(check_weight_option, "--efficientnet-weights"),
    ("extract", "--clip-weights"): weight(check_weight_option, "--clip-weights"),
    ("extract", "--clip-vocab"): weight(check_weight_option, "--clip-vocab"),
    ("extract", "--esresnext-weights"): weight(check_weight_option, "--esresnext-weights"),
    ("extract", "--spacy-model"): check_extract_spacy_model, ("extract", "--frames"): EXTRACT,
    ("extract", "--segments"): EXTRACT,
    ("extract", "--batch-size"):
        "tests/pipeline/test_dataset_toy.py::test_a_registered_toy_dataset_is_extracted_and_trained_through_the_cli",
    ("extract", "--workers"): EXTRACT, ("extract", "--limit"): EXTRACT, ("extract", "--splits"): check_extract_splits,
    ("extract", "--split-file"): "tests/cli/test_cli_extract.py::test_extract_with_a_split_file",
    ("extract", "--num-shards"): check_extract_shards, ("extract", "--shard-index"): check_extract_shards,
    ("extract", "--shard-size"): EXTRACT, ("extract", "--strict"): check_extract_strict,
    ("extract", "--quiet"): EXTRACT, ("extract", "--label-range"): check_extract_custom_facts,
    ("extract", "--classes"):
        "tests/pipeline/test_datasets_custom.py::test_flags_fix_the_class_order_and_reject_other_names",
    ("extract", "--split-seed"): check_extract_custom_facts,
    ("import csd", "--dataset"): "tests/pipeline/test_import_csd.py::test_import_train_evaluate_through_the_cli",
    ("import csd", "--quiet"): "tests/pipeline/test_import_csd.py::test_import_train_evaluate_through_the_cli",
    **{("import csd", option): check_import_csd for option in
       ("--out", "--text", "--video", "--audio", "--words", "--labels", "--align", "--shard-size")},
    ("import mmsa", "--dataset"): MOSI_IMPORT, ("import mmsa", "--profile"): MOSI_IMPORT,
    ("import mmsa", "--quiet"): MOSI_IMPORT, ("import mmsa", "--out"): check_import_out,
    ("import mmsa", "--text-model"): import_weight("--text-model"),
    ("import mmsa", "--spacy-model"): check_import_spacy_model,
    ("import mmsa", "--weights-dir"): import_weight("--weights-dir"),
    ("import mmsa", "--clip-weights"): import_weight("--clip-weights"),
    ("import mmsa", "--clip-vocab"): import_weight("--clip-vocab"),
    ("import mmsa", "--trust-pickle"): check_import_trust_pickle,
    ("import mmsa", "--aligned-rows"): check_import_aligned_rows, ("import mmsa", "--device"): check_import_device,
    ("import mmsa", "--batch-size"): check_import_batch_size, ("import mmsa", "--shard-size"): check_import_shard_size,
    ("predict", "--text"): PREDICT_CONTEXT, ("predict", "--context-before"): PREDICT_CONTEXT,
    ("predict", "--context-after"): PREDICT_CONTEXT,
    ("predict", "--run"): "tests/apps/test_predict.py::test_same_clip_same_text_same_score",
    ("predict", "--out"): PREDICT_BATCH, ("predict", "--json"): PREDICT_BATCH,
    ("predict", "--batch-size"): PREDICT_BATCH, ("predict", "--quiet"): PREDICT_BATCH,
    ("predict", "--device"): PAPER_PATH, ("predict", "--weights-dir"): PAPER_PATH,
    ("predict", "--precision"): "tests/apps/test_predict.py::test_another_precision_than_the_caches_is_noted",
    ("quickstart", "--config"): "tests/cli/test_cli_quickstart.py::test_quickstart_end_to_end_and_rerun",
    ("quickstart", "--quiet"): "tests/cli/test_cli_quickstart.py::test_quickstart_end_to_end_and_rerun",
    ("quickstart", "--threads"): check_quickstart_threads,
    ("report", "--out"): "tests/apps/test_report.py::test_report_of_two_runs_is_self_contained_with_every_section",
    ("report", "--split"): "tests/apps/test_report.py::test_report_names_what_a_run_lacks",
    ("reproduce", "--dataset"): REPRODUCE, ("reproduce", "--seeds"): REPRODUCE, ("reproduce", "--epochs"): REPRODUCE,
    ("reproduce", "--set"): REPRODUCE, ("reproduce", "--latex"): REPRODUCE, ("reproduce", "--quiet"): REPRODUCE,
    **{("reproduce", option): check_reproduce for option in ("--features", "--variants", "--model-size", "--threads")},
    ("runs", "--dataset"): check_runs_dataset, ("runs", "--json"): SUMMARIES,
    ("serve", "--port"): SERVE, ("serve", "--host"): SERVE_OPTIONS, ("serve", "--token"): SERVE_OPTIONS,
    ("serve", "--max-upload-mb"): SERVE_OPTIONS,
    ("sample", "--dataset"): SAMPLE, ("sample", "--n"): SAMPLE, ("sample", "--faults"): SAMPLE,
    ("sample", "--quiet"): SAMPLE, ("sample", "--out"): SAMPLE_ALL, ("sample", "--seed"): SAMPLE_ALL,
    ("train", "--features"): check_train_features, ("train", "--epochs"): train_setting("epochs"),
    ("train", "--batch-size"): train_setting("batch_size"), ("train", "--lr"): train_setting("lr"),
    ("train", "--variant"): check_train_variant, ("train", "--modalities"): check_train_modalities,
    ("train", "--seed"): train_setting("seed"), ("train", "--seeds"): check_train_seeds,
    ("train", "--device"): train_setting("device"), ("train", "--ot-backend"): check_train_ot_backend,
    ("train", "--in-memory"): train_setting("in_memory"), ("train", "--workers"): train_setting("num_workers"),
    ("train", "--set"): check_train_set, ("train", "--resume"): RESUME, ("train", "--run"): RESUME,
    ("train", "--skip-nonfinite"): train_setting("skip_nonfinite"), ("train", "--threads"): check_train_threads,
    ("train", "--model-size"): check_train_model_size, ("train", "--config"): check_train_config,
    ("train", "--quiet"): "tests/cli/test_cli_train.py::test_train_then_evaluate_the_latest_run",
    ("tune", "--features"): check_tune, ("tune", "--space"): TUNE, ("tune", "--grid"):
        "tests/apps/test_tune.py::test_grid_sweep_draws_metric_against_value",
    ("tune", "--trials"): TUNE, ("tune", "--workers"): TUNE_WORKERS,
    ("tune", "--storage"): "tests/apps/test_tune.py::test_a_real_postgresql_server", ("tune", "--study"): check_tune,
    ("tune", "--pruner"): TUNE_WORKERS, ("tune", "--epochs"): TUNE, ("tune", "--set"): TUNE,
    ("tune", "--model-size"): check_tune, ("tune", "--seed"): check_tune, ("tune", "--confirm-seeds"): TUNE,
    ("tune", "--top"): TUNE, ("tune", "--heartbeat"): TUNE, ("tune", "--status"): TUNE,
    ("tune", "--threads"):
        "tests/apps/test_tune.py::test_a_killed_worker_leaves_its_trial_failed_and_the_study_goes_on",
    ("tune", "--quiet"): TUNE,
}


DRIVEN = sorted({check: key for key, check in ROWS.items() if callable(check)}.items(), key=lambda kv: kv[1])


@pytest.mark.slow
@pytest.mark.parametrize("check", [check for check, _ in DRIVEN],
                         ids=[" ".join(key) + " (" + check.__name__ + ")" for check, key in DRIVEN])
def test_option_has_its_effect(check, request: pytest.FixtureRequest) -> None:
    """One row's check (a check shared by several rows runs once), with the fixtures it names."""
    check(**{name: request.getfixturevalue(name) for name in inspect.signature(check).parameters})


def help_options(command: list[str]) -> list[tuple[str, ...]]:
    """The long names of each option row of ``hcm <command> --help`` (``--help`` left out)."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^  (?:-\w, )?(--[a-z0-9-]+(?:, --[a-z0-9-]+)*)", result.output.split("\nOptions:\n")[1],
                      re.MULTILINE)
    return [tuple(row.split(", ")) for row in rows if row != "--help"]


def test_every_option_in_help_has_a_row() -> None:
    listed = {(" ".join(command), names) for command in command_paths() for names in help_options(command)}
    assert len(listed) > 100  # the parse found the option rows
    missing = [f"hcm {command} {names[0]}" for command, names in sorted(listed)
               if not any((command, name) in ROWS for name in names)]
    assert not missing, f"options without a row in ROWS: {missing}"
    stale = sorted(key for key in ROWS if not any(key[0] == c and key[1] in names for c, names in listed))
    assert not stale, f"rows for options --help no longer lists: {stale}"


def test_every_named_test_exists() -> None:
    for target in sorted({check for check in ROWS.values() if isinstance(check, str)}):
        path, name = target.split("::")
        tree = ast.parse((REPO / path).read_text())
        assert name in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}, target
