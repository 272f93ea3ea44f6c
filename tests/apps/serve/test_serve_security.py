"""``hcm serve``'s guards, on a workspace without a model (fast): files only from inside the workspace,
the access token on a non-loopback address, same-origin writes, the host check, and uploads limited
in size and judged by decoding in a worker process, not by their name. Each refusal is a page that
says why, and the server answers the next request."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hcm_serve_client import BASE, ORIGIN, make_client

pytest.importorskip("fastapi", reason="hcm serve's web packages: pip install -e '.[serve]'")

from hcm.apps.serve.security import COOKIE, FileRefused, workspace_file  # noqa: E402
from hcm.apps.serve.settings import ServeSettings  # noqa: E402
from hcm.core.errors import UsageError  # noqa: E402

RUN = "sample/20250101-000000-full"


def loopback(workspace, **changes) -> ServeSettings:
    return ServeSettings(workspace, device="cpu", **changes)


@pytest.mark.parametrize("path", ["../outside.json", "data/../../outside.json", "%2e%2e/outside.json",
                                  "..%2Foutside.json", "data/..%2F..%2Foutside.json"])
def test_path_traversal_is_refused(bare_workspace, path: str) -> None:
    (bare_workspace.root.parent / "outside.json").write_text('{"secret": 1}')
    with make_client(loopback(bare_workspace)) as client:
        answer = client.get(f"/files/{path}")
        assert answer.status_code == 404 and "secret" not in answer.text
        assert "not served" in answer.text or "Not Found" in answer.text
        assert client.get("/files/notes.json").json() == {"kept": "inside"}  # the server still answers


def test_absolute_paths_are_refused(bare_workspace) -> None:
    inside = bare_workspace.root / "notes.json"
    with make_client(loopback(bare_workspace)) as client:
        for path in (f"/files/{inside}", f"/files//{inside}", "/files/%2Fetc%2Fpasswd"):
            answer = client.get(path)
            assert answer.status_code == 404 and "kept" not in answer.text, path
    with pytest.raises(FileRefused, match="absolute path"):
        workspace_file(bare_workspace.root, str(inside))
    with pytest.raises(FileRefused, match="'..'"):
        workspace_file(bare_workspace.root, "runs/../notes.json")


def test_a_symlink_out_of_the_workspace_is_refused(bare_workspace, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": 1}')
    (bare_workspace.root / "data").mkdir()
    os.symlink(secret, bare_workspace.root / "data" / "clip.json")
    os.symlink(bare_workspace.root / "notes.json", bare_workspace.root / "data" / "inside.json")
    with make_client(loopback(bare_workspace)) as client:
        answer = client.get("/files/data/clip.json")
        assert answer.status_code == 404 and "leads out of the workspace" in answer.text
        assert client.get("/files/data/inside.json").json() == {"kept": "inside"}  # a link that stays inside


def test_only_media_pictures_and_text_files_are_served(bare_workspace) -> None:
    (bare_workspace.root / "runs" / "model.pt").write_bytes(b"weights")
    with make_client(loopback(bare_workspace)) as client:
        answer = client.get("/files/runs/model.pt")
    assert answer.status_code == 404 and "not a kind of file" in answer.text


def test_a_non_loopback_server_needs_its_token(bare_workspace) -> None:
    settings = ServeSettings.checked(bare_workspace, "0.0.0.0", 8765, None, 10)
    assert settings.token and len(settings.token) >= 16 and settings.url.endswith(f"?token={settings.token}")
    with make_client(settings, base_url="http://192.0.2.10:8765") as client:
        refused = client.get("/runs")
        assert refused.status_code == 401 and "access token" in refused.text
        assert client.get("/runs?token=wrong-token-of-the-right-length").status_code == 401
        assert client.get("/files/notes.json").status_code == 401
        opened = client.get(f"/runs?token={settings.token}")
        assert opened.status_code == 200 and COOKIE in opened.headers["set-cookie"]
        assert "HttpOnly" in opened.headers["set-cookie"] and "SameSite=Strict" in opened.headers["set-cookie"]
        assert client.get("/files/notes.json").json() == {"kept": "inside"}  # the cookie carries it now
        assert client.get("/runs", headers={"x-hcm-token": settings.token}).status_code == 200


def test_settings_refuse_a_short_token_and_a_bad_port(bare_workspace) -> None:
    with pytest.raises(UsageError, match="at least 16"):
        ServeSettings.checked(bare_workspace, "0.0.0.0", 8765, "short", 10)
    with pytest.raises(UsageError, match="not a TCP port"):
        ServeSettings.checked(bare_workspace, "127.0.0.1", 70000, None, 10)
    assert ServeSettings.checked(bare_workspace, "127.0.0.1", 8765, None, 10).token is None


def test_a_cross_origin_post_is_refused(bare_workspace) -> None:
    with make_client(loopback(bare_workspace)) as client:
        for headers in ({"origin": "http://evil.example"}, {"origin": "http://127.0.0.1:9999"},
                        {"referer": "http://evil.example/page"}, {}):
            answer = client.post("/predict", data={"run": RUN}, headers=headers)
            assert answer.status_code == 403 and "another site" in answer.text, headers
        same = client.post("/predict", data={"run": RUN}, headers=ORIGIN)
        assert same.status_code == 400 and "choose a clip file" in same.text


def test_a_cross_origin_post_with_only_the_cookie_is_refused(bare_workspace) -> None:
    settings = ServeSettings.checked(bare_workspace, "0.0.0.0", 8765, "a-token-long-enough-1234", 10)
    with make_client(settings, base_url="http://192.0.2.10:8765") as client:
        client.get(f"/runs?token={settings.token}")  # the cookie is set
        answer = client.post("/predict", data={"run": RUN}, headers={"origin": "http://evil.example"})
        assert answer.status_code == 403
        explicit = client.post(f"/predict?token={settings.token}", data={"run": RUN},
                               headers={"origin": "http://evil.example"})
        assert explicit.status_code == 400  # the token itself may write: a script of the user's


def test_a_foreign_host_name_is_refused_on_loopback(bare_workspace) -> None:
    """A DNS name rebound to 127.0.0.1 by another site does not reach the server."""
    with make_client(loopback(bare_workspace), base_url="http://rebound.example:8765") as client:
        assert client.get("/runs").status_code == 400


def test_an_oversize_upload_is_refused_on_the_page(bare_workspace) -> None:
    with make_client(loopback(bare_workspace, max_upload_mb=0.5)) as client:
        big = b"\0" * (2 * 1024 * 1024)
        answer = client.post("/predict", data={"run": RUN}, files={"clip": ("big.mp4", big, "video/mp4")},
                             headers=ORIGIN)
        assert answer.status_code == 413 and "limit of 0.5 MB" in answer.text and "--max-upload-mb" in answer.text
        assert client.get("/predict").status_code == 200


@pytest.mark.parametrize("content", [b"this is a text file, not a clip", b"\x80\x03}q\x00.", b""])
def test_a_non_media_upload_named_mp4_is_refused_by_decoding(bare_workspace, content: bytes) -> None:
    with make_client(loopback(bare_workspace)) as client:
        answer = client.post("/predict", data={"run": RUN, "text": "hello"},
                             files={"clip": ("holiday.mp4", content, "video/mp4")}, headers=ORIGIN)
        assert answer.status_code == 400
        assert ("holiday.mp4 is not a usable clip" in answer.text if content
                else "no clip was uploaded" in answer.text)
        assert 'id="error"' in answer.text and client.get("/runs").status_code == 200
        assert list(client.app.state.uploads.iterdir()) == []  # the upload is deleted

def test_names_and_text_from_a_request_are_escaped_on_the_page(bare_workspace) -> None:
    with make_client(loopback(bare_workspace)) as client:
        answer = client.post("/predict", data={"run": RUN, "text": "<script>alert(1)</script>"},
                             files={"clip": ("<img src=x onerror=alert(2)>.mp4", b"junk", "video/mp4")},
                             headers=ORIGIN)
    assert answer.status_code == 400
    assert "&lt;img src=x onerror=alert(2)&gt;.mp4 is not a usable clip" in answer.text
    assert "<img src=x" not in answer.text and "<script>alert" not in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_an_upload_that_decodes_too_slowly_is_stopped(bare_workspace, served_clip: Path) -> None:
    with make_client(loopback(bare_workspace, probe_seconds=0.01)) as client:
        answer = client.post("/predict", data={"run": RUN},
                             files={"clip": ("slow.mp4", served_clip.read_bytes(), "video/mp4")}, headers=ORIGIN)
    assert answer.status_code == 400 and "did not decode within 0.01 s" in answer.text


def test_a_failing_prediction_is_a_message_and_the_server_stays_up(bare_workspace, served_clip: Path) -> None:
    """The run folder's config names no cache: the decoded clip reaches the predictor, which fails."""
    with make_client(loopback(bare_workspace)) as client:
        answer = client.post("/predict", data={"run": RUN},
                             files={"clip": ("talk.mp4", served_clip.read_bytes(), "video/mp4")}, headers=ORIGIN)
        assert answer.status_code == 500 and "the prediction failed: KeyError: &#39;cache&#39;" in answer.text
        assert client.get("/runs").status_code == 200


def test_hcm_serve_without_the_web_packages_names_the_extra(monkeypatch, bare_workspace) -> None:
    from hcm.apps.serve import command

    real = command.importlib.util.find_spec
    monkeypatch.setattr(command.importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert command.missing_packages() == ["uvicorn"]
    with pytest.raises(UsageError, match=r"uvicorn: pip install 'hcm\[serve\]'"):
        command.serve(loopback(bare_workspace))
    assert BASE.startswith("http://127.0.0.1")
