"""Where a cached item's raw clip lies in the workspace, so a page can play it.

Only clips inside the workspace may be served, so rather than the folder a cache records as its
source (``hcm.pipeline.sources``, which may lie anywhere), the index asks the dataset's own reader
(``hcm.pipeline.datasets``) about every corpus folder under ``<workspace>/data/`` whose layout it
accepts, and keeps the clip of each item id. Only clips inside the workspace are kept;
they are served through the file route, whose checks (``hcm.apps.serve.security``) apply again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from hcm.core.files import leads_out
from hcm.core.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipRef:
    """A clip as the page plays it: its path relative to the workspace and its time window."""

    path: str
    start: float | None = None
    end: float | None = None

    @property
    def fragment(self) -> str:
        """The media fragment (``#t=start,end``) that plays only the utterance's window."""
        if self.start is None and self.end is None:
            return ""
        return f"#t={self.start or 0:g}" + (f",{self.end:g}" if self.end is not None else "")


class ClipIndex:
    """Item id -> clip, per dataset, read once (thread-safe)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._lock = threading.Lock()
        self._by_dataset: dict[str, dict[str, ClipRef]] = {}

    def clips(self, dataset: str) -> dict[str, ClipRef]:
        with self._lock:
            if dataset not in self._by_dataset:
                self._by_dataset[dataset] = self._read(dataset)
            return self._by_dataset[dataset]

    def _read(self, dataset: str) -> dict[str, ClipRef]:
        from hcm.pipeline.datasets import get_dataset

        try:
            adapter = get_dataset(dataset)
        except Exception:  # noqa: BLE001 - a dataset of a plugin not loaded here: no clips to play
            return {}
        root = self.workspace.root.resolve()
        found: dict[str, ClipRef] = {}
        folders = sorted(p for p in self.workspace.data.glob("*") if p.is_dir()) if self.workspace.data.is_dir() else []
        for folder in folders:
            try:
                adapter.check_root(folder)
                utterances = adapter.utterances(folder)
            except Exception as error:  # noqa: BLE001 - not this dataset's layout, or a damaged corpus
                log.debug("no %s corpus in %s: %s", dataset, folder, error)
                continue
            for u in utterances:
                ref = u.video or u.audio
                if ref is None or u.id in found or leads_out(root, ref.path) or not Path(ref.path).is_file():
                    continue
                found[u.id] = ClipRef(Path(ref.path).resolve().relative_to(root).as_posix(), ref.start, ref.end)
        return found
