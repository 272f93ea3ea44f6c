"""The runs page lists runs oldest first, as `hcm runs` does, also when two start in the same second."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("fastapi")

from hcm.apps.serve.pages import Pages  # noqa: E402
from hcm.core.workspace import Workspace  # noqa: E402


def test_runs_of_the_same_second_are_listed_in_the_order_they_were_made(tmp_path) -> None:
    workspace = Workspace(tmp_path / "hcm-work")
    made = ["20250101-000000-full-va", "20250101-000000-full", "20250101-000001-no-acl"]  # va first
    for when, name in enumerate(made):
        run = workspace.runs / "sample" / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"dataset": "sample", "model": {}, "train": {}}))
        os.utime(run / "config.json", (1000 + when, 1000 + when))
    pages = Pages(workspace)
    assert [row["run"] for row in pages.runs_table()["rows"]] == [f"sample/{name}" for name in made]
    newest_first = pages.runs_table(descending=True)["rows"]
    assert [row["run"] for row in newest_first] == [f"sample/{name}" for name in reversed(made)]
    assert {row["reading"] for row in newest_first} == {"hcm"}  # no reading recorded: a run from before it
