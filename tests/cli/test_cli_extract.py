"""``hcm extract`` end to end through the CLI on the generated sample corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cache import FeatureCache
from hcm.cli import app
from hcm.pipeline.sample import make_sample


@pytest.mark.slow
def test_extract_sample_then_resume(workdir: Path) -> None:
    make_sample("mosei", workdir / "data" / "sample-mosei", n=9, seed=3, progress=False)
    runner = CliRunner()
    args = ["extract", "--dataset", "sample", "--frames", "2", "--segments", "2", "--workers", "0", "--limit", "6", "--shard-size", "3", "--quiet"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "6 extracted" in first.output
    out = workdir / "features" / "sample" / "tiny"
    with FeatureCache(out) as cache:
        assert len(cache) == 6 and cache.meta.profile == "tiny"
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 already complete" in again.output


def test_wrong_root_is_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["extract", "--dataset", "meld", "--data-root", str(tmp_path / "nowhere"),
                                      "--profile", "tiny", "--quiet"])
    assert result.exit_code == 2
    assert "does not hold the expected layout" in result.output and "Traceback" not in result.output


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["extract", "--help"])
    assert result.exit_code == 0
    for option in ("--weights-dir", "--num-shards", "--strict", "--limit", "--splits"):
        assert option in result.output
