"""hcm.core.threads: CPUs from affinity and cgroup quota; --threads; a writable-folder check (hcm.core.files)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from hcm.core import files, threads
from hcm.core.errors import UsageError


def test_cgroup_quota_in_v2_and_v1_layouts(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "cpu.max", tmp_path / "v1"
    v1.mkdir()
    v2.write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(v2, v1) == 1.5
    v2.write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(v2, v1) is None
    v2.unlink()
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(v2, v1) == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no quota"
    assert threads.cgroup_cpu_limit(v2, v1) is None


def test_usable_cpus_is_the_affinity_set_capped_by_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.5)
    assert threads.usable_cpus() == 3
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.usable_cpus() == 16  # the affinity set, never the host's 64 cores
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.2)
    assert threads.usable_cpus() == 1


def test_set_threads_defaults_to_the_usable_cpus_and_obeys_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "usable_cpus", lambda: 1)
    try:
        assert threads.set_threads() == 1 and torch.get_num_threads() == 1
        assert threads.set_threads(2) == 2 and torch.get_num_threads() == 2
        with pytest.raises(UsageError, match="--threads must be at least 1"):
            threads.set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_passive_waits_keeps_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.passive_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    threads.passive_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "active"


def test_check_writable_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert files.check_writable(tmp_path / "runs", "the runs folder") == tmp_path / "runs"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == []  # the probe file is gone

    def read_only(**kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "TemporaryFile", read_only)
    with pytest.raises(UsageError, match=r"the runs folder .*runs is not writable \(Read-only file system\)"):
        files.check_writable(tmp_path / "runs", "the runs folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_refuses_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UsageError, match="is not writable"):
            files.check_writable(folder, "the runs folder")
    finally:
        folder.chmod(0o755)


def _as_unprivileged_user(directory: Path) -> str:
    """``check_writable(directory)`` run in a forked child that dropped root to nobody (65534):
    "ok", or the UsageError's message."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                files.check_writable(directory, "the runs folder")
                message = "ok"
            except UsageError as error:
                message = str(error)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user (the test above runs instead)")
def test_check_writable_refuses_a_read_only_folder_as_another_user() -> None:
    """As root (CI), the same property for an unprivileged user: the folder's mode decides."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="hcm-writable-"))  # in /tmp, so that nobody can reach it
    try:
        base.chmod(0o755)
        open_folder, read_only = base / "open", base / "runs"
        open_folder.mkdir(mode=0o777)
        open_folder.chmod(0o777)
        read_only.mkdir()
        read_only.chmod(0o555)
        assert _as_unprivileged_user(open_folder) == "ok"  # the user can write where the mode allows
        message = _as_unprivileged_user(read_only)
        assert re.fullmatch(r"the runs folder .*runs is not writable \(Permission denied\); .*", message), message
    finally:
        shutil.rmtree(base)
