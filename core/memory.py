"""Giving back the pages of a file mapping that this process has read and no longer needs.

Weight files are mapped, not read (``hcm.core.torch_archive``; safetensors, as transformers
loads them): a tensor's pages join the process's resident memory when it is first read and
stay there while the mapping lives, that is while any tensor of the file does. When a mapped
tensor was read once to make another (a float32 weight stored in bfloat16, see
``hcm.pipeline.encoders.precision``), :meth:`FileMappings.release` drops its whole pages from
this process with ``madvise(MADV_DONTNEED)``; the file's other tensors stay mapped, and the page
cache still holds the released pages (reading the tensor again reads them back from it).

Only pages inside a mapping of a file are released: in anonymous memory the same advice would
discard data. Where ``/proc/self/maps`` or ``madvise`` does not exist (not Linux), nothing is
released, and nothing on a GPU. Tensors are used through ``is_cpu``, ``data_ptr()`` and ``nbytes``
only: core does not import torch.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
from bisect import bisect_right
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROC_MAPS = Path("/proc/self/maps")


def file_mapped_ranges(maps: Path = PROC_MAPS) -> list[tuple[int, int]]:
    """``[start, end)`` of every mapping of a file in this process, sorted (none where ``maps`` is
    missing). Device files (``/dev/zero`` maps anonymous memory) and unnamed mappings are left out."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
        if len(fields) == 6 and fields[4] != "0" and fields[5].startswith("/") and not fields[5].startswith("/dev/"):
            start, end = fields[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return sorted(ranges)


class FileMappings:
    """This process's file mappings, read once; :meth:`release` gives back a mapped tensor's pages."""

    def __init__(self) -> None:
        self.ranges = file_mapped_ranges()
        self.starts = [start for start, _ in self.ranges]
        self._madvise = _libc_madvise() if self.ranges and hasattr(mmap, "MADV_DONTNEED") else None

    def release(self, tensor: Any) -> int:
        """Drop the whole pages of ``tensor``'s bytes from this process when they lie in one file
        mapping; the bytes released (0 for a tensor in anonymous memory or on a GPU).

        Read again, the pages come back from the file: what was written into a copy-on-write
        mapping is lost. Release only a tensor that nothing uses any more."""
        if self._madvise is None or not tensor.is_cpu:
            return 0
        first = tensor.data_ptr()
        start = -(-first // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages only: neighbours share the edges
        end = (first + tensor.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end <= start:
            return 0
        index = bisect_right(self.starts, start) - 1
        if index < 0 or end > self.ranges[index][1]:
            return 0
        if self._madvise(start, end - start, mmap.MADV_DONTNEED) != 0:
            log.debug("madvise(MADV_DONTNEED) failed (errno %d); the pages stay resident", ctypes.get_errno())
            return 0
        return end - start


def _libc_madvise() -> Any:
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise
