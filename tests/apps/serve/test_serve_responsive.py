"""While a prediction works on the model worker, every other page keeps answering: a prediction that
takes seconds (a stand-in for the model) does not hold up the runs page on the same server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="hcm serve's web packages: pip install -e '.[serve]'")

from hcm.apps.serve.command import background_server  # noqa: E402
from hcm.apps.serve.models import Models  # noqa: E402
from hcm.apps.serve.settings import ServeSettings  # noqa: E402
from hcm.core.errors import UsageError  # noqa: E402

WORK_SECONDS = 4.0


@pytest.mark.slow  # a real server and a 4 s stand-in prediction
def test_pages_answer_while_a_prediction_works(bare_workspace, served_clip: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    started = threading.Event()

    def slow_prediction(self, run_dir, given, explain=True, name=""):
        started.set()
        time.sleep(WORK_SECONDS)
        raise UsageError(f"stand-in model: {name} took {WORK_SECONDS:g} s")

    monkeypatch.setattr(Models, "predict_clip", slow_prediction)
    answers = {}
    with background_server(ServeSettings(bare_workspace, port=0, device="cpu")) as base:
        def predict() -> None:
            answers["predict"] = httpx.post(f"{base}/predict", headers={"origin": base}, timeout=60,
                                            data={"run": "sample/20250101-000000-full"},
                                            files={"clip": ("talk.mp4", served_clip.read_bytes(), "video/mp4")})

        worker = threading.Thread(target=predict)
        worker.start()
        assert started.wait(30), "the prediction never reached the model worker"
        asked = time.perf_counter()
        pages = [httpx.get(f"{base}{path}", timeout=60) for path in ("/runs", "/predict", "/studies")]
        waited = time.perf_counter() - asked
        worker.join(60)
    assert [page.status_code for page in pages] == [200, 200, 200]
    assert waited < WORK_SECONDS / 2, f"pages waited {waited:.1f} s for the prediction"
    assert answers["predict"].status_code == 400 and "stand-in model: talk.mp4 took 4 s" in answers["predict"].text
