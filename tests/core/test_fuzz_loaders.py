"""Fuzzing the untrusted-file loaders in a subprocess: thousands of mutated MMSA pickles and
checkpoints and hypothesis-generated opcode streams end in a value or hcm's own error, with no
signal, no hang and no code run (the gadgets spliced in would write a marker file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "fuzz_loaders.py"


def test_mutated_and_generated_inputs_never_crash_hang_or_run_code(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(WORKER), str(tmp_path), "28", "1500", "1000"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"worker ended with {done.returncode} (negative: killed by a signal)\n{done.stderr}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    findings = sorted(p.name for p in tmp_path.glob("unexpected-*.txt"))
    first = (tmp_path / findings[0]).read_text() if findings else ""
    assert summary["unexpected"] == 0, f"{findings[:5]}\n{first}"
    assert not summary["marker"] and not (tmp_path / "ran").exists()
    assert summary["inputs"] == 1500 + 500 + 1000
    assert summary["refused"] > 1000 and summary["values"] > 0  # both outcomes are exercised
