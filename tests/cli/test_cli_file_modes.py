"""Files follow the umask: hcm run under umask 022 (quickstart, evaluate with plots, runs, predict
--out) leaves every file it wrote readable by others (0644) and every folder 0755, as any program
would, so colleagues on a shared server can read caches and results."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hcm_quickstart_tiny import TINY

import hcm


def hcm_under_umask(umask: int, workdir: Path, *args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(hcm.__file__).parent.parent), "HCM_HOME": str(workdir),
           "OMP_NUM_THREADS": "2"}
    code = f"import os, sys; os.umask({umask:#o}); from hcm.cli import app; app(sys.argv[1:], prog_name='hcm')"
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_everything_hcm_writes_follows_the_umask(tmp_path: Path) -> None:
    workdir = tmp_path / "hcm-work"
    settings = tmp_path / "quickstart.json"
    settings.write_text(json.dumps(TINY))
    hcm_under_umask(0o022, workdir, "quickstart", "--config", settings, "--quiet", "--threads", "2")
    hcm_under_umask(0o022, workdir, "evaluate", "--tsne", "--threads", "2")
    hcm_under_umask(0o022, workdir, "runs")
    clip = next((workdir / "data").rglob("*.mp4"))
    hcm_under_umask(0o022, workdir, "predict", clip, "--out", workdir / "predictions.csv", "--quiet")

    written = [path for path in workdir.rglob("*") if not path.is_symlink()]
    names = {path.name for path in written}
    for expected in ("manifest.json", "config.json", "metrics.json", "predictions.csv", "best.pt", "last.pt",
                     "scatter.png", "tsne.png", "curves.png", "results.csv", "quickstart.json", "metrics.csv"):
        assert expected in names, f"{expected} was not written; the check would miss it"
    wrong = {str(path.relative_to(workdir)): oct(stat.S_IMODE(path.stat().st_mode)) for path in written
             if stat.S_IMODE(path.stat().st_mode) != (0o755 if path.is_dir() else 0o644)}
    assert not wrong, f"not 0644 (files) / 0755 (folders) under umask 022: {wrong}"
