"""A wrong path or name fails at once: the command line checks them before torch (and the other
heavy libraries) are imported, so the answer takes a fraction of a second, not the 5-7 s of
loading torch first. Checked by what a subprocess has imported, not by timing it."""

from __future__ import annotations

from pathlib import Path

from cli_probe import probe_commands


def test_bad_paths_and_names_fail_before_torch_is_imported(tmp_path: Path) -> None:
    missing, text = str(tmp_path / "none"), tmp_path / "notes.txt"
    text.write_text("not what hcm expects\n")
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
    ]
    report, stderr = probe_commands(calls, tmp_path / "w", timeout=300)
    assert report["codes"] == [2] * len(calls), (report, stderr[-3000:])
    assert report["heavy"] == [], f"imported {report['heavy']} before the arguments were checked"
    assert "Traceback" not in stderr
