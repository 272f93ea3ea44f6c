"""The smallest ``hcm quickstart``: 12 clips, 2 epochs of a small model (tens of seconds on 2 CPU cores).

``TINY`` is the settings file's content (``hcm quickstart --config``); :func:`tiny_quickstart` makes
such a workspace directly (for session fixtures that need real runs, a corpus and a cache).
"""

from __future__ import annotations

from pathlib import Path

TINY = {
    "sample": {"dataset": "mosei", "n": 12, "seed": 0},
    "extract": {"profile": "tiny", "shard_size": 4, "batch_size": 4},
    "compare_modalities": "va",
    "model": {"d_model": 16, "num_heads": 2, "m_ctn": 2, "m_gcn": 1, "m_c": 1, "ot_iters": 5},
    "train": {"epochs": 2, "batch_size": 4, "patience": 0},
}


def tiny_quickstart(root: Path):
    """A workspace at ``root`` holding the quickstart's corpus, cache and its two evaluated runs."""
    from rich.console import Console

    from hcm.apps.quickstart import QuickstartConfig, quickstart
    from hcm.core.workspace import Workspace

    workspace = Workspace(Path(root))
    quickstart(workspace, QuickstartConfig.from_dict(TINY), progress=False, console=Console(quiet=True))
    return workspace
