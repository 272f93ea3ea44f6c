"""The one shard loop of stage one: ``hcm extract`` and every importer write a cache through it.

A cache is cut into shards of ``shard_size`` consecutive plan positions (docs/architecture.md);
each shard is written whole, so a re-run skips the complete ones and continues. A writer of a
new source (an importer) plans its entries in a fixed order, then::

    loop = ShardLoop(entries, shard_size, writer)          # which shards are still to write
    counts = loop.run(write_shard, f"import {dataset}", progress)

``write_shard(k, entries, advance)`` turns one shard's entries into items and failures, calls
``writer.write_shard_once(k, ...)`` and returns what it returned (False: another process wrote
shard ``k`` meanwhile); ``advance(n)`` moves the progress bar by ``n`` entries. The loop shows one
progress bar over the entries of the shards it writes and counts the shards (:class:`ShardCounts`,
which summaries print with :meth:`ShardCounts.done`).

``assignment=(N, I)`` shares the shards between N processes: this one writes the shards ``k``
with ``k % N == I`` (:func:`shard_assignment` reads it from the options or the environment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Mapping, Sequence, TypeVar

from hcm.cache import CacheError, CacheWriter, Failure, Item
from hcm.core.errors import UsageError
from hcm.core.progress import progress_bar

T = TypeVar("T")
Advance = Callable[[int], None]  # move the progress bar by n entries
CANNOT_STORE = "features cannot be stored"  # the failure of an item the cache refuses (the detail says why)


def storable(writer: CacheWriter, items: Sequence[Item]) -> tuple[list[Item], list[Failure]]:
    """``(kept, failures)``: the items the cache can store, and a failure for each other one (never
    dropped silently)."""
    kept, failures = [], []
    for item in items:
        try:
            writer.validate(item)
        except CacheError as error:
            failures.append(Failure(item.id, CANNOT_STORE, item.split, str(error)))
            continue
        kept.append(item)
    return kept, failures


@dataclass
class ShardCounts:
    """How the shards of one run went."""

    total: int = 0  # shards in the whole plan
    mine: int = 0  # assigned to this process
    resumed: int = 0  # of mine, already complete before this run
    by_others: int = 0  # of mine, completed by another process while this one encoded them

    @property
    def written(self) -> int:
        return self.mine - self.resumed - self.by_others

    def done(self) -> str:
        """``"3 written, 1 already complete"``: the start of a summary's shard line."""
        return f"{self.written} written, {self.resumed} already complete"


class ShardLoop(Generic[T]):
    """The shards of ``entries`` (plan order) that this process still has to write, and the loop writing them.

    Args:
        entries: one per plan position (utterances, file rows), in the plan's fixed order.
        shard_size: plan positions per shard.
        writer: the cache's writer; a shard it holds complete (``shard_done``) is skipped.
        assignment: ``(N, I)``: this process writes the shards ``k`` with ``k % N == I``.
    """

    def __init__(self, entries: Sequence[T], shard_size: int, writer: CacheWriter,
                 assignment: tuple[int, int] = (1, 0)) -> None:
        n_workers, my_index = assignment
        total = -(-len(entries) // shard_size)
        mine = [k for k in range(total) if k % n_workers == my_index]
        self.todo = [k for k in mine if not writer.shard_done(k)]
        self.spans = {k: entries[k * shard_size:(k + 1) * shard_size] for k in self.todo}
        self.counts = ShardCounts(total=total, mine=len(mine), resumed=len(mine) - len(self.todo))

    @property
    def pending_total(self) -> int:
        """How many entries the shards still to write hold."""
        return sum(map(len, self.spans.values()))

    def pending(self) -> Iterator[T]:
        """The entries of the shards still to write, in order (e.g. to decode them ahead of the loop)."""
        return (entry for k in self.todo for entry in self.spans[k])

    def run(self, write_shard: Callable[[int, Sequence[T], Advance], bool], title: str, progress: bool = True,
            rate: bool = False) -> ShardCounts:
        """Write every pending shard with ``write_shard`` under one progress bar titled ``title``.

        ``rate`` adds the entries per second to the bar.
        """
        fields = ("{task.fields[rate]}",) if rate else ()
        with progress_bar(progress, *fields, eta=True) as bar:
            task = bar.add_task(title, total=self.pending_total, rate="")

            def advance(n: int) -> None:
                bar.advance(task, n)
                if rate:
                    speed = bar.tasks[task].speed
                    bar.update(task, rate=f"{speed:.1f} items/s" if speed else "")

            for k in self.todo:
                if not write_shard(k, self.spans[k], advance):
                    self.counts.by_others += 1
        return self.counts


def shard_assignment(num_shards: int | None, shard_index: int | None,
                     environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``(N, I)``: explicit options, else a SLURM array, else torchrun's WORLD_SIZE/RANK, else (1, 0)."""
    if num_shards is None and shard_index is None:
        if "SLURM_ARRAY_TASK_COUNT" in environ and "SLURM_ARRAY_TASK_ID" in environ:
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
            num_shards = int(environ["SLURM_ARRAY_TASK_COUNT"])
            shard_index = int(environ["SLURM_ARRAY_TASK_ID"]) - first
        elif "WORLD_SIZE" in environ and "RANK" in environ:
            num_shards, shard_index = int(environ["WORLD_SIZE"]), int(environ["RANK"])
    num_shards = 1 if num_shards is None else num_shards
    shard_index = 0 if shard_index is None else shard_index
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UsageError(
            f"shard index {shard_index} of {num_shards} workers is out of range: "
            f"--shard-index must be in [0, --num-shards)"
        )
    return num_shards, shard_index
