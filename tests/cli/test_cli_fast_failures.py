"""A wrong path or name fails at once: the command line checks them before torch (and the other
heavy libraries) are imported, so the answer takes a fraction of a second, not the 5-7 s of
loading torch first. Checked by what a subprocess has imported, not by timing it."""

from __future__ import annotations

from pathlib import Path

from cli_probe import probe_commands


def test_bad_paths_and_names_fail_before_torch_is_imported(tmp_path: Path) -> None:
    missing, text = str(tmp_path / "none"), tmp_path / "notes.txt"
    text.write_text("not what hcm expects\n")
    space = tmp_path / "space.json"
    space.write_text('{"dropout": [0.1, 0.2]}')
    calls = [
        ["train", "--features", missing],
        ["train", "--features", str(text)],
        ["train", "--resume", "--run", missing],
        ["evaluate", "--run", missing],
        ["evaluate", "--features", missing],
        ["extract", "--dataset", "foo"],
        ["extract", "--dataset", "mosei", "--data-root", missing],
        ["extract", "--dataset", "sample", "--split-file", missing],
        ["extract", "--dataset", "mosei", "--weights-dir", missing],
        ["predict", missing + ".mp4"],
        ["predict", str(text), "--run", missing],
        ["ablate", "--features", missing],
        ["import", "mmsa", missing + ".pkl", "--dataset", "mosi"],
        ["quickstart", "--config", missing + ".json"],
        ["extract", "--dataset", "sample", "--profile", "huge"],
        ["import", "mmsa", str(text), "--dataset", "iemocap"],
        ["import", "mmsa", str(text), "--dataset", "mosi", "--profile", "huge"],
        ["import", "csd", str(tmp_path), "--dataset", "meld"],
        ["reproduce", "--dataset", "sample"],
        ["reproduce", "--variants", "full,no-att"],
        ["tune", "--space", missing + ".json"],
        ["tune", "--space", str(text)],
        ["tune", "--grid", "m_gcn"],
        ["tune", "--grid", "m_gcn=1,2", "--space", str(space)],
        ["explain", missing + ".mp4"],
        ["explain", "--ids", ","],
        ["explain", "--ids", "a", "--worst", "2"],
        ["explain", "--text", "hello"],
        ["report", missing],
        ["report", str(tmp_path)],
    ]
    report, stderr = probe_commands(calls, tmp_path / "w", timeout=300)
    assert report["codes"] == [2] * len(calls), (report, stderr[-3000:])
    assert report["heavy"] == [], f"imported {report['heavy']} before the arguments were checked"
    assert "Traceback" not in stderr
    for message in ("unknown extraction profile 'huge'; known: paper, tiny", "'iemocap': MMSA files exist for",
                    "'meld': the SDK's standard folds are known for", "the paper reports no numbers for 'sample'",
                    "unknown --variants ['no-att']", f"search space {missing}.json does not exist",
                    f"search space {text} is not valid JSON", "--grid 'm_gcn': write NAME=V1,V2,...",
                    "--grid and --space are two kinds of study", "give at least one item id",
                    "give --ids or --worst, not both", "--text goes with a clip",
                    f"{tmp_path} is not a run folder (no config.json)"):
        assert message in stderr, message
    assert not (tmp_path / "w" / "data").exists()  # extract --profile huge was refused before the sample corpus
