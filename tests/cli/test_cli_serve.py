"""``hcm serve`` from the command line: option checks, the missing web packages named with their extra,
and a real start that prints its address, answers it and stops on Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cli import app

runner = CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0", "--token", "short"], "give at least 16"),
    (["--port", "70000"], "is not a TCP port"),
    (["--max-upload-mb", "0"], "must be above 0"),
])
def test_bad_options_are_usage_errors(workdir: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2 and message in result.output


def test_without_the_web_packages_it_names_the_extra(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hcm.apps.serve import command

    monkeypatch.setattr(command, "missing_packages", lambda: ["fastapi", "python-multipart"])
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "needs the web packages fastapi, python-multipart: pip install 'hcm[serve]'" in result.output


def test_a_port_in_use_is_a_usage_error(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = runner.invoke(app, ["serve", "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 2 and "another program may use the port: give another with --port" in result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_answer(server: subprocess.Popen, url: str):
    """The first answer of the server at ``url``, asked again while it is starting (up to 60 s)."""
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url)
        except httpx.ConnectError:
            assert time.monotonic() < deadline and server.poll() is None, "hcm serve did not answer"
            time.sleep(0.2)


@pytest.mark.slow  # a subprocess that loads the web stack and torch
def test_hcm_serve_prints_its_address_answers_and_stops_on_ctrl_c(workdir: Path) -> None:
    pytest.importorskip("httpx")

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hcm", "serve", "-w", str(workdir), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [server.stdout.readline() for _ in range(2)]
        assert f"open http://127.0.0.1:{port}/;" in lines[1], lines
        page = first_answer(server, f"http://127.0.0.1:{port}/runs")
        assert page.status_code == 200 and "No runs in this workspace yet" in page.text
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    assert server.returncode in (0, 130), server.returncode


@pytest.mark.slow  # a subprocess that loads the web stack and torch
def test_hcm_serve_with_host_token_and_upload_limit(workdir: Path) -> None:
    """Valid values of the other options, with their effects: the address printed carries the
    token, a request without it is refused and one with it answers, and an upload past the
    limit is refused naming it."""
    pytest.importorskip("httpx")
    import httpx

    port, token = free_port(), "a-token-of-twenty-chars"
    server = subprocess.Popen([sys.executable, "-m", "hcm", "serve", "-w", str(workdir), "--host", "127.0.0.1",
                               "--port", str(port), "--token", token, "--max-upload-mb", "2.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        lines = [server.stdout.readline() for _ in range(2)]
        assert f"open {base}/?token={token}" in "".join(lines), lines
        refused = first_answer(server, f"{base}/runs")
        assert refused.status_code in (401, 403)
        assert httpx.get(f"{base}/runs", params={"token": token}).status_code == 200
        upload = httpx.post(f"{base}/predict", params={"token": token}, data={"text": "hi"},
                            files={"clip": ("clip.mp4", b"0" * (3 * 2 ** 20), "video/mp4")})
        assert upload.status_code == 413 and "limit of 2.5 MB" in upload.text
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    assert server.returncode in (0, 130), server.returncode
