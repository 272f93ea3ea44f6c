"""A wrong path or name fails at once: the command line checks them before torch (and the other
heavy libraries) are imported, so the answer takes a fraction of a second, not the 5-7 s of
loading torch first. Checked by what a subprocess has imported, not by timing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hcm

PROBE = """
import json, sys
from hcm.cli import app
codes = []
for args in json.loads(sys.argv[1]):
    try:
        app(args, prog_name="hcm")
    except SystemExit as stop:
        codes.append(stop.code)
print(json.dumps({"codes": codes, "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


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
    env = {**os.environ, "PYTHONPATH": str(Path(hcm.__file__).parent.parent), "HCM_HOME": str(tmp_path / "w")}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(calls)], capture_output=True, text=True,
                          env=env, timeout=300)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["codes"] == [2] * len(calls), (report, done.stderr[-3000:])
    assert report["heavy"] == [], f"imported {report['heavy']} before the arguments were checked"
    assert "Traceback" not in done.stderr
