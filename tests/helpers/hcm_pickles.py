"""A pickle that runs code when loaded: what a doctored checkpoint in a shared run folder would hold."""

from __future__ import annotations

from pathlib import Path


class RunsCode:
    """Unpickling this calls ``exec``, which writes ``marker``; a safe loader must refuse it first."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)
