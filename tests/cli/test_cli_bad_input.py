"""Every command under a table of user mistakes: each one is a message on stderr and exit 1 or 2,
never a traceback. Names are case-insensitive where the field's names are (``MOSEI`` works)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hcm_tiny_cache import build_cache
from typer.testing import CliRunner

from hcm.cli import app

runner = CliRunner()

# {tmp}: a scratch folder; {file}: a text file; {empty}: an empty folder; {readonly}: a path that
# cannot be created even by root; {cache}: a valid tiny cache; {run}: a folder that is not a run.
BAD_INPUTS: list[tuple[str, list[str]]] = [
    ("quickstart-missing-config", ["quickstart", "--config", "{tmp}/none.json"]),
    ("quickstart-config-is-folder", ["quickstart", "--config", "{empty}"]),
    ("quickstart-config-not-json", ["quickstart", "--config", "{file}"]),
    ("quickstart-threads-0", ["quickstart", "--threads", "0"]),
    ("sample-unknown", ["sample", "--dataset", "cmumosi"]),
    ("sample-n-0", ["sample", "--dataset", "MOSEI", "--n", "0"]),
    ("sample-n-word", ["sample", "--dataset", "mosei", "--n", "many"]),
    ("sample-out-is-file", ["sample", "--dataset", "Meld", "--out", "{file}", "--n", "4", "--quiet"]),
    ("sample-out-readonly", ["sample", "--dataset", "mosei", "--out", "{readonly}", "--n", "4", "--quiet"]),
    ("sample-n-beyond-the-disk", ["sample", "--dataset", "iemocap", "--n", "1000000000000"]),
    ("extract-unknown", ["extract", "--dataset", "cmumosi"]),
    ("extract-upper-missing-root", ["extract", "--dataset", "MOSEI", "--data-root", "{tmp}/none", "--profile", "tiny"]),
    ("extract-empty-root", ["extract", "--dataset", "meld", "--data-root", "{empty}", "--profile", "tiny"]),
    ("extract-root-is-file", ["extract", "--dataset", "iemocap", "--data-root", "{file}", "--profile", "tiny"]),
    ("extract-unknown-profile", ["extract", "--dataset", "mosei", "--profile", "huge"]),
    ("extract-frames-0", ["extract", "--dataset", "mosei", "--frames", "0"]),
    ("extract-shard-index", ["extract", "--dataset", "mosei", "--num-shards", "2", "--shard-index", "5"]),
    ("extract-bad-device", ["extract", "--dataset", "sample", "--device", "gpu9"]),
    ("extract-bad-splits", ["extract", "--dataset", "sample", "--splits", "training"]),
    ("extract-split-file-missing", ["extract", "--dataset", "sample", "--split-file", "{tmp}/none.csv"]),
    ("extract-split-file-wrong", ["extract", "--dataset", "sample", "--split-file", "{file}"]),
    ("train-missing-features", ["train", "--features", "{tmp}/none"]),
    ("train-empty-features", ["train", "--features", "{empty}"]),
    ("train-features-is-file", ["train", "--features", "{file}"]),
    ("train-no-cache", ["train"]),
    ("train-epochs-0", ["train", "--features", "{cache}", "--epochs", "0"]),
    ("train-epochs-word", ["train", "--epochs", "ten"]),
    ("train-batch-0", ["train", "--features", "{cache}", "--batch-size", "0"]),
    ("train-lr-negative", ["train", "--features", "{cache}", "--lr", "-1"]),
    ("train-unknown-variant", ["train", "--features", "{cache}", "--variant", "nope"]),
    ("train-bad-modalities", ["train", "--features", "{cache}", "--modalities", "xyz"]),
    ("train-bad-seeds", ["train", "--features", "{cache}", "--seeds", "a,b"]),
    ("train-bad-set", ["train", "--features", "{cache}", "--set", "dropout"]),
    ("train-unknown-set", ["train", "--features", "{cache}", "--set", "nope=1"]),
    ("train-set-wrong-type", ["train", "--features", "{cache}", "--set", "dropout=abc"]),
    ("train-set-wrong-type-train", ["train", "--features", "{cache}", "--set", "epochs=1.5"]),
    ("ablate-set-wrong-type", ["ablate", "--features", "{cache}", "--variants", "full", "--set", "d_model=big"]),
    ("train-bad-device", ["train", "--features", "{cache}", "--device", "gpu9"]),
    ("train-bad-ot-backend", ["train", "--features", "{cache}", "--ot-backend", "magic"]),
    ("train-resume-missing", ["train", "--resume", "--run", "{tmp}/none"]),
    ("train-resume-not-a-run", ["train", "--resume", "--run", "{run}"]),
    ("evaluate-no-run", ["evaluate"]),
    ("evaluate-missing-run", ["evaluate", "--run", "{tmp}/none"]),
    ("evaluate-not-a-run", ["evaluate", "--run", "{run}"]),
    ("evaluate-run-is-file", ["evaluate", "--run", "{file}"]),
    ("evaluate-bad-split", ["evaluate", "--split", "everything"]),
    ("runs-none", ["runs"]),
    ("runs-unknown-dataset", ["runs", "--dataset", "cmumosi"]),
    ("predict-missing-clip", ["predict", "{tmp}/none.mp4"]),
    ("predict-clip-is-folder", ["predict", "{empty}"]),
    ("predict-no-run", ["predict", "{file}"]),
    ("predict-not-a-run", ["predict", "{file}", "--run", "{run}"]),
    ("predict-out-not-csv", ["predict", "{file}", "--out", "{tmp}/p.txt"]),
    ("predict-text-for-several", ["predict", "{file}", "{file}", "--text", "hi"]),
    ("predict-list-not-csv", ["predict", "{tmp}/list.csv"]),
    ("ablate-no-cache", ["ablate"]),
    ("ablate-unknown-variant", ["ablate", "--features", "{cache}", "--variants", "nope"]),
    ("ablate-bad-modalities", ["ablate", "--features", "{cache}", "--variants", "", "--modalities", "xyz"]),
    ("ablate-bad-seeds", ["ablate", "--features", "{cache}", "--seeds", "a"]),
    ("ablate-epochs-0", ["ablate", "--epochs", "0"]),
    ("import-missing-file", ["import", "mmsa", "{tmp}/none.pkl", "--dataset", "mosi"]),
    ("import-wrong-file", ["import", "mmsa", "{file}", "--dataset", "MOSI", "--profile", "tiny"]),
    ("import-folder", ["import", "mmsa", "{empty}", "--dataset", "mosi"]),
    ("import-unknown-dataset", ["import", "mmsa", "{file}", "--dataset", "cmumosi"]),
    ("import-unknown-profile", ["import", "mmsa", "{file}", "--dataset", "mosi", "--profile", "huge"]),
    ("import-aligned-rows", ["import", "mmsa", "{file}", "--dataset", "mosi", "--aligned-rows", "some"]),
    ("cache-info-missing", ["cache", "info", "{tmp}/none"]),
    ("cache-info-empty", ["cache", "info", "{empty}"]),
    ("cache-info-file", ["cache", "info", "{file}"]),
    ("cache-verify-missing", ["cache", "verify", "{tmp}/none"]),
    ("cache-verify-empty", ["cache", "verify", "{empty}"]),
    ("cache-verify-file", ["cache", "verify", "{file}"]),
    ("unknown-command", ["trian"]),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not what hcm expects\n")
    (root / "list.csv").write_text("clip;words\na.mp4;hi\n")
    (root / "run").mkdir()
    (root / "run" / "notes.txt").write_text("a folder without a checkpoint\n")
    build_cache(root / "cache", n=12)
    return {"tmp": str(root), "file": str(root / "notes.txt"), "empty": str(root / "empty"),
            "readonly": "/proc/hcm-cannot-write-here", "cache": str(root / "cache"), "run": str(root / "run")}


@pytest.mark.parametrize("args", [case[1] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_a_mistake_is_a_message_not_a_traceback(args: list[str], places: dict[str, str], workdir: Path) -> None:
    filled = [arg.format(**places) for arg in args]
    result = runner.invoke(app, ["--workdir", str(workdir), *filled])
    unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
    assert unexpected is None, f"{type(unexpected).__name__}: {unexpected}"
    assert "Traceback" not in result.output
    assert result.exit_code in (1, 2), result.output
    assert result.stderr.strip(), f"the error is not on stderr: {result.output}"


@pytest.mark.parametrize("home", ["{file}", "{file}/work", "{readonly}"], ids=["file", "under-a-file", "readonly"])
@pytest.mark.parametrize("command", [["sample", "--dataset", "meld", "--n", "4", "--quiet"], ["train"], ["runs"]],
                         ids=lambda command: command[0])
def test_a_workspace_that_cannot_be_one_is_a_message(home: str, command: list[str], places: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """$HCM_HOME (or --workdir) naming a file, a path under a file, or a read-only place."""
    monkeypatch.setenv("HCM_HOME", home.format(**places))
    result = runner.invoke(app, command)
    unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
    assert unexpected is None, f"{type(unexpected).__name__}: {unexpected}"
    assert result.exit_code in (1, 2) and result.stderr.strip() and "Traceback" not in result.output


def test_names_are_case_insensitive(workdir: Path) -> None:
    result = runner.invoke(app, ["sample", "--dataset", "MOSEI", "--n", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (workdir / "data" / "sample-mosei").is_dir()
