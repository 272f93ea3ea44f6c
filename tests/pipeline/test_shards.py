"""The one shard loop (hcm.pipeline.shards), driven as a new importer would drive it."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest
from cache_synth import make_meta, synthetic_item

from hcm.cache import CacheWriter, Failure, FeatureCache
from hcm.pipeline.shards import ShardCounts, ShardLoop

N_PLANNED, SHARD_SIZE = 23, 5  # five shards, the last one of three entries


class ToyImporter:
    """Plan positions -> items (every 7th a failure), written one shard at a time; records what it saw."""

    def __init__(self, directory: Path, stop_at: int | None = None) -> None:
        self.writer = CacheWriter(directory, make_meta(SHARD_SIZE))
        self.stop_at, self.seen, self.advanced = stop_at, [], 0

    def write_shard(self, k: int, entries: Sequence[int], advance) -> bool:
        if k == self.stop_at:
            raise KeyboardInterrupt  # the user stops the import during shard k
        self.seen.append((k, list(entries)))
        items = [synthetic_item(i) for i in entries if i % 7 != 6]
        failures = [Failure(synthetic_item(i).id, "unusable row") for i in entries if i % 7 == 6]
        advance(len(entries))
        self.advanced += len(entries)
        return self.writer.write_shard_once(k, items, failures)

    def run(self, assignment: tuple[int, int] = (1, 0)) -> ShardCounts:
        loop = ShardLoop(list(range(N_PLANNED)), SHARD_SIZE, self.writer, assignment)
        return loop.run(self.write_shard, "import toy", progress=False)


def test_an_interrupted_import_resumes_with_the_shards_left(tmp_path: Path) -> None:
    first = ToyImporter(tmp_path, stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert [k for k, _ in first.seen] == [0, 1]
    again = ToyImporter(tmp_path)
    counts = again.run()
    assert [k for k, _ in again.seen] == [2, 3, 4]
    assert again.seen[-1] == (4, [20, 21, 22])
    assert again.advanced == 13  # the progress bar counts the entries of the shards written now
    assert (counts.total, counts.mine, counts.resumed, counts.written) == (5, 5, 2, 3)
    assert counts.done() == "3 written, 2 already complete"
    again.writer.finalize(N_PLANNED)
    with FeatureCache(tmp_path) as cache:
        assert len(cache) == N_PLANNED - 3  # positions 6, 13 and 20 failed


def test_shards_are_shared_between_processes(tmp_path: Path) -> None:
    second = ToyImporter(tmp_path)
    counts = second.run(assignment=(2, 1))
    assert [k for k, _ in second.seen] == [1, 3]
    assert (counts.total, counts.mine, counts.written) == (5, 2, 2)
    first = ToyImporter(tmp_path)
    assert first.run(assignment=(2, 0)).mine == 3
    assert [k for k, _ in first.seen] == [0, 2, 4]


def test_a_shard_written_by_another_process_is_counted(tmp_path: Path) -> None:
    importer = ToyImporter(tmp_path)
    loop = ShardLoop(list(range(N_PLANNED)), SHARD_SIZE, importer.writer)
    assert list(loop.pending()) == list(range(N_PLANNED))
    counts = loop.run(lambda k, entries, advance: k != 3, "import toy", progress=False)
    assert (counts.by_others, counts.written) == (1, 4)
