"""hcm.core.memory: the pages of a mapped tensor are given back, and anything else is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hcm.core.memory import PROC_MAPS, FileMappings, file_mapped_ranges
from hcm.core.torch_archive import read_archive

pytestmark = pytest.mark.skipif(not PROC_MAPS.is_file(), reason="reads /proc/self/maps (Linux)")
MIB = 1 << 20


def resident_file_bytes() -> int:
    """This process's resident pages of mapped files (``RssFile``)."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith("RssFile:")).split()[1]) * 1024


def test_a_mapped_tensor_gives_its_pages_back_and_still_reads_the_same(tmp_path: Path) -> None:
    value = torch.arange(8 * MIB, dtype=torch.float32)  # 32 MiB
    torch.save({"w": value}, tmp_path / "w.pt")
    mapped = read_archive(tmp_path / "w.pt", mapped=True)["w"]
    before = resident_file_bytes()
    assert torch.equal(mapped, value)  # reads every page: resident now
    read = resident_file_bytes()
    assert read - before > 30 * MIB
    assert FileMappings().release(mapped) > 31 * MIB  # all but the pages it shares at its ends
    assert read - resident_file_bytes() > 30 * MIB
    assert torch.equal(mapped, value)  # read back from the file


def test_anonymous_memory_is_left_alone() -> None:
    value = torch.arange(MIB, dtype=torch.float32)
    assert FileMappings().release(value) == 0
    assert torch.equal(value, torch.arange(MIB, dtype=torch.float32))


def test_only_mappings_of_files_are_listed(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0000000000-7f0000002000 r--p 00000000 08:01 1234   /weights/model.safetensors\n"
        "7f0000004000-7f0000005000 rw-p 00000000 00:00 0 \n"
        "7f0000006000-7f0000007000 rw-p 00000000 00:05 5      /dev/zero (deleted)\n"
        "7ffc00000000-7ffc00001000 rw-p 00000000 00:00 0      [stack]\n"
        "7e0000000000-7e0000001000 r--s 00001000 08:01 99     /data/shard-00000.h5\n")
    assert file_mapped_ranges(maps) == [(0x7E0000000000, 0x7E0000001000), (0x7F0000000000, 0x7F0000002000)]
    assert file_mapped_ranges(tmp_path / "missing") == []
