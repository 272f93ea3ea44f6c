"""Every page of ``hcm serve`` on a workspace made by ``hcm quickstart`` (through FastAPI's TestClient):
the runs table (sorted, filtered), a run's report and per-sample table with explain links and clips,
an item's explanation, the comparison of two runs, predict on an uploaded clip, the studies page."""

from __future__ import annotations

import csv
import json
import re
from html import unescape

import pytest
from hcm_serve_client import ORIGIN

pytest.importorskip("fastapi", reason="hcm serve's web packages: pip install -e '.[serve]'")

from hcm.apps.report import cell  # noqa: E402

pytestmark = pytest.mark.slow  # the session's quickstart workspace takes tens of seconds


def cells(html: str, table: str, column: int) -> list[str]:
    """The text of one column of the table ``id=table`` (header row left out)."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)[1:]
    return [unescape(re.sub(r"<[^>]+>", "", re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)[column])).strip()
            for row in rows]


def test_the_runs_table_lists_sorts_and_filters(client, served) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.url.path == "/runs"
    assert cells(page.text, "runs", 1) == served.runs  # oldest first, as hcm runs lists them
    maes = {run: json.loads((served.workspace.runs / run / "eval" / "test" / "metrics.json").read_text())
            ["metrics"]["mae"] for run in served.runs}
    by_mae = client.get("/runs?sort=test_mae&desc=false").text
    assert cells(by_mae, "runs", 1) == sorted(served.runs, key=maes.get)
    assert cells(client.get("/runs?sort=test_mae&desc=true").text, "runs", 1) == sorted(served.runs, key=maes.get,
                                                                                         reverse=True)
    assert "MAE" in by_mae and cell("mae", maes[served.runs[0]]) in cells(by_mae, "runs", 10)
    assert cells(client.get("/runs?dataset=sample").text, "runs", 1) == served.runs
    assert "No run matches the filter" in client.get("/runs?dataset=mosei").text
    assert "No run matches the filter" in client.get("/runs?reading=literal").text


def test_a_run_page_shows_the_report_and_every_sample(client, served) -> None:
    key = served.runs[-1]
    page = client.get(f"/runs/{key}")
    assert page.status_code == 200
    for heading in ("Metrics on test", "Training curves", "Plots", "Samples of test"):
        assert heading in page.text
    assert page.text.count('src="data:image/png;base64,') >= 3  # curves, scatter, confusion
    predictions = list(csv.DictReader(open(served.workspace.runs / key / "eval" / "test" / "predictions.csv")))
    ids = cells(page.text, "samples", 0)
    assert sorted(ids) == sorted(row["id"] for row in predictions)
    errors = [float(e) for e in cells(page.text, "samples", 4)]
    assert errors == sorted(errors, reverse=True)  # worst first
    expected = {r["id"]: abs(float(r["prediction"]) - float(r["label"])) for r in predictions}
    assert all(abs(float(e) - expected[i]) < 1e-3 for i, e in zip(ids, errors))
    by_id = cells(client.get(f"/runs/{key}?sort=id&desc=false").text, "samples", 0)
    assert by_id == sorted(ids)
    assert all(text and "not available" not in text for text in cells(page.text, "samples", 1))  # transcripts
    clips = re.findall(r'data-src="/files/([^"#]+)', page.text)
    assert len(clips) == len(ids) and all((served.workspace.root / c).is_file() for c in clips)
    video = client.get(f"/files/{clips[0]}", headers={"range": "bytes=0-99"})
    assert video.status_code == 206 and len(video.content) == 100  # seekable in a browser
    assert f'href="/explain?run={key.replace("/", "%2F")}&amp;split=test&amp;id=' in page.text


def test_an_item_explanation_with_its_clip(client, served) -> None:
    key = served.runs[-1]
    predictions = list(csv.DictReader(open(served.workspace.runs / key / "eval" / "test" / "predictions.csv")))
    item = predictions[0]
    page = client.get("/explain", params={"run": key, "split": "test", "id": item["id"]})
    assert page.status_code == 200
    assert f"Item {item['id']}" in unescape(page.text)
    assert re.search(r'id="prediction">([^<]+)<', page.text).group(1) == f"{float(item['prediction']):+.3f}"
    assert re.search(r'id="label">([^<]+)<', page.text).group(1) == f"{float(item['label']):+.3f}"
    assert "contribution (full − without)" in page.text and 'alt="hcm explain: transport plans' in page.text
    assert re.search(r"<video id=\"player\" controls preload=\"metadata\" src=\"/files/data/quickstart-mosei/Raw/",
                     page.text)
    missing = client.get("/explain", params={"run": key, "split": "test", "id": "no-such-item"})
    assert missing.status_code == 404 and "no item &#39;no-such-item&#39;" in missing.text


def test_compare_puts_two_runs_side_by_side(client, served) -> None:
    page = client.get("/compare", params=[("run", key) for key in served.runs])
    assert page.status_code == 200
    assert len(cells(page.text, "comparison", 0)) == 2 and 'alt="overlaid curves"' in page.text
    assert all(f'href="/runs/{key}"' in page.text for key in served.runs)
    one = client.get("/compare", params={"run": served.runs[0]})
    assert one.status_code == 400 and "choose two or more runs" in one.text
    unknown = client.get("/compare", params=[("run", served.runs[0]), ("run", "sample/nothing")])
    assert unknown.status_code == 404 and "no run &#39;sample/nothing&#39;" in unknown.text


def test_predict_on_an_uploaded_clip(client, served) -> None:
    form = client.get("/predict")
    assert form.status_code == 200 and f'<option value="{served.runs[-1]}" selected>' in form.text
    loads = client.app.state.models.loads
    for _ in range(2):
        answer = client.post("/predict", headers=ORIGIN, data={"run": served.runs[-1], "text": "I loved it",
                                                               "explain": "true"},
                             files={"clip": ("my talk.mp4", served.clip.read_bytes(), "video/mp4")})
        assert answer.status_code == 200, answer.text
        score = float(re.search(r'id="score">([^<]+)<', answer.text).group(1))
        label = re.search(r'id="label">([^<]+)<', answer.text).group(1)
        assert label == ("positive" if score > 0 else "negative" if score < 0 else "neutral")
        assert "Prediction for my talk.mp4" in answer.text and "What made the prediction" in answer.text
    assert client.app.state.models.loads <= loads + 1  # the predictor loaded once and was reused
    quiet = client.post("/predict", headers=ORIGIN, data={"run": served.runs[-1]},
                        files={"clip": ("clip.mp4", served.clip.read_bytes(), "video/mp4")})
    assert quiet.status_code == 200 and "no transcript given" in quiet.text and "What made" not in quiet.text


def test_studies_page_without_a_study(client, served) -> None:
    page = client.get("/studies")
    assert page.status_code == 200 and "No <code>hcm tune</code> study" in page.text


def test_an_unknown_run_is_a_page_that_says_so(client) -> None:
    answer = client.get("/runs/sample/20000101-000000-none")
    assert answer.status_code == 404 and "the runs page lists them" in answer.text
