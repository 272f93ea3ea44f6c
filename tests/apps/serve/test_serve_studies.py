"""The studies page lists the ``hcm tune`` studies of the workspace's storage, with their best trial,
their history picture and a link to their runs (a study written here with Optuna directly)."""

from __future__ import annotations

import pytest
from hcm_serve_client import make_client

pytest.importorskip("fastapi", reason="hcm serve's web packages: pip install -e '.[serve]'")

from hcm.apps.serve.settings import ServeSettings  # noqa: E402


def test_studies_are_listed_with_their_best_trial(bare_workspace) -> None:
    import optuna

    folder = bare_workspace.root / "tune"
    (folder / "lr-search").mkdir(parents=True)
    (folder / "lr-search" / "history.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    storage = f"sqlite:///{folder / 'studies.db'}"
    study = optuna.create_study(study_name="lr-search", storage=storage, direction="minimize")
    for value in (0.9, 0.42, 0.7):
        study.add_trial(optuna.trial.create_trial(params={"lr": value / 100},
                                                  distributions={"lr": optuna.distributions.FloatDistribution(
                                                      1e-4, 1e-1, log=True)}, value=value))
    with make_client(ServeSettings(bare_workspace, device="cpu")) as client:
        page = client.get("/studies")
    assert page.status_code == 200
    assert '<a href="/runs?study=lr-search">lr-search</a>' in page.text
    assert "<td>minimize</td>" in page.text and '<td class="num">3</td>' in page.text
    assert '<td class="num">0.4200</td>' in page.text and "lr=0.0042" in page.text
    assert 'src="/files/tune/lr-search/history.png"' in page.text and f"optuna-dashboard {storage}" in page.text
