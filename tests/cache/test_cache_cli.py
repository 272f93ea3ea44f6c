"""``hcm cache info`` and ``hcm cache verify`` end to end through the typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hcm.cache import cache_info
from hcm.cli import app

runner = CliRunner()


def test_info_table_and_json(cache_dir: Path) -> None:
    result = runner.invoke(app, ["cache", "info", str(cache_dir)])
    assert result.exit_code == 0, result.output
    assert "mosei (profile tiny, task regression)" in result.output
    assert "20 of 23 planned, complete" in result.output and "failures   3" in result.output
    assert "roberta            (n, 16)" in result.output
    result = runner.invoke(app, ["cache", "info", str(cache_dir), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == cache_info(cache_dir)
    info = json.loads(result.output)
    assert info["counts"] == {"test": 6, "train": 7, "valid": 7} and len(info["failures"]) == 3
    assert info["features"]["mel"] == {"shape": [8], "dim": 8, "dtype": "float16", "encoder": "librosa", "weights": "-"}


def test_verify_ok_then_each_problem(cache_dir: Path) -> None:
    result = runner.invoke(app, ["cache", "verify", str(cache_dir)])
    assert result.exit_code == 0 and result.output.startswith("OK")
    shard = cache_dir / "shard-00003.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    (cache_dir / "shard-00009.h5").write_bytes(b"stray")
    result = runner.invoke(app, ["cache", "verify", str(cache_dir)])
    assert result.exit_code == 1
    assert "shard-00003.h5: sha256 differs" in result.output
    assert "shard-00009.h5: present but not listed" in result.output
    assert "OK" not in result.output


def test_not_a_cache_is_a_clear_error(tmp_path: Path) -> None:
    for command in (["cache", "info", str(tmp_path)], ["cache", "verify", str(tmp_path)],
                    ["cache", "info", str(tmp_path / "missing"), "--json"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert "error:" in result.output and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
