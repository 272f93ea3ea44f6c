"""The hcm workspace: one folder holding raw data, feature caches and runs.

Resolution order: an explicit ``--workdir``, then ``$HCM_HOME``, then ``./hcm-work``.
Nothing is ever written inside the installed package.

    <workdir>/data/<dataset>/              raw corpora (``hcm sample`` writes here)
    <workdir>/features/<dataset>/<profile>/ feature caches (``hcm extract``)
    <workdir>/runs/<dataset>/<run>/         training runs (``hcm train``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKDIR = "hcm-work"
ENV_VAR = "HCM_HOME"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, workdir: str | os.PathLike | None = None) -> "Workspace":
        """The workspace from ``workdir``, else ``$HCM_HOME``, else ``./hcm-work``."""
        chosen = workdir or os.environ.get(ENV_VAR) or DEFAULT_WORKDIR
        return cls(Path(chosen).expanduser().resolve())

    def problem(self) -> str | None:
        """Why this folder cannot be a workspace (a file is in the way), or None."""
        for path in (self.root, *self.root.parents):
            if path.exists():
                if path.is_dir():
                    return None
                return (f"the workspace {self.root} cannot be a folder: {path} is a file. Give --workdir (or "
                        f"$HCM_HOME) a folder, e.g. --workdir ./hcm-work")
        return None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def data_dir(self, dataset: str) -> Path:
        return self.data / dataset

    def features_dir(self, dataset: str, profile: str) -> Path:
        return self.features / dataset / profile

    def runs_dir(self, dataset: str) -> Path:
        return self.runs / dataset
