"""``hcm extract`` end to end through the CLI on the generated sample corpus."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hcm.cache import FeatureCache
from hcm.cli import app
from hcm.pipeline.sample import make_sample


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
    for option in ("--weights-dir", "--num-shards", "--strict", "--limit", "--splits", "--split-file"):
        assert option in result.output


def test_extract_with_a_split_file(workdir: Path, tmp_path: Path) -> None:
    root = make_sample("mosei", workdir / "data" / "sample-mosei", n=6, seed=3, progress=False).root
    ids = (root / "label.csv").read_text().splitlines()[1:3]
    chosen = [f"{row.split(',')[0]}$_${row.split(',')[1]}" for row in ids]
    split_file = tmp_path / "split.csv"
    split_file.write_text(f"id,split\n{chosen[0]},test\n{chosen[1]},train\n")
    result = CliRunner().invoke(app, ["extract", "--dataset", "sample", "--frames", "2", "--segments", "2",
                                      "--workers", "0", "--split-file", str(split_file), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 extracted" in result.output and "4 dataset items not in it left out" in result.output
    with FeatureCache(workdir / "features" / "sample" / "tiny") as cache:
        assert {cache[i].id: cache[i].split for i in range(len(cache))} == {chosen[0]: "test", chosen[1]: "train"}
