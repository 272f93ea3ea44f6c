"""hcm.core: the registry, atomic writes, JSON reading and the error -> exit code map."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from hcm.core import files
from hcm.core.errors import EXIT_INTERRUPTED, EXIT_USAGE, HcmError, UnknownNameError, UsageError, report_errors
from hcm.core.registry import Registry


def test_registry_is_case_insensitive_and_lists_known_names() -> None:
    things: Registry[int] = Registry("widget")
    things.register("Alpha")(1)
    things.register("beta")(2)
    assert things.get("ALPHA") == 1 and "Beta" in things and things.names() == ["alpha", "beta"]
    with pytest.raises(UnknownNameError, match="unknown widget 'gamma'; known: alpha, beta") as caught:
        things.get("gamma")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("unknown widget")  # not quoted the way KeyError quotes
    with pytest.raises(ValueError, match="already registered"):
        things.register("ALPHA")(3)


def test_atomic_write_keeps_the_old_file_when_the_disk_fills(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    files.write_json(target, {"epoch": 1})

    def full_disk(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(target, full_disk)
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "the temporary file must be removed"


def test_atomic_write_syncs_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = files.os.fsync, files.os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    files.write_text(tmp_path / "a.txt", "x")
    assert events[:2] == ["fsync", "replace"] and (tmp_path / "a.txt").read_text() == "x"


def test_read_json_names_the_file_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run config .*missing.json does not exist"):
        files.read_json(tmp_path / "missing.json", "run config")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="run config .*bad.json is not valid JSON"):
        files.read_json(tmp_path / "bad.json", "run config")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object, found list"):
        files.read_json_object(tmp_path / "list.json", "settings")


def test_json_safe_turns_nan_into_null() -> None:
    assert files.json_safe({"a": float("nan"), "b": (1.0, float("inf"))}) == {"a": None, "b": [1.0, None]}


def _raise(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize("error,code", [
    (UsageError("bad --epochs 0"), EXIT_USAGE),
    (HcmError("checkpoint damaged"), 1),
    (FileNotFoundError("no such cache"), 1),
    (KeyboardInterrupt(), EXIT_INTERRUPTED),
])
def test_report_errors_prints_one_line_and_returns_the_exit_code(error: BaseException, code: int,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert report_errors(lambda: _raise(error), interrupted="interrupted; re-run to resume") == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (str(error) or "re-run to resume") in err


def test_report_errors_lets_programming_errors_through() -> None:
    with pytest.raises(ZeroDivisionError):
        report_errors(lambda: 1 / 0)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_write_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """Like any file open() creates: 0666 less the umask (not mkstemp's 0600)."""
    old = os.umask(umask)
    try:
        files.write_json(tmp_path / "a.json", {"x": 1})
        files.atomic_write(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"\0"))
    finally:
        os.umask(old)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {"a.json": mode, "b.bin": mode}
