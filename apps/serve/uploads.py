"""An uploaded clip: saved within the size limit under a name the server makes, then judged by
decoding it in a worker process with a time limit (``hcm.apps.serve.probe``), never by its name.

The server reads nothing else from the file: it is not unpickled, imported or run, and its name
from the browser only lends a media suffix (kept when it is one hcm reads, else ``.media``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

from fastapi import UploadFile

from hcm.apps.predict_inputs import MEDIA_SUFFIXES

CHUNK = 1 << 20


class UploadRefused(Exception):
    """An upload the server does not use; the message is shown on the page."""


async def save_upload(upload: UploadFile, folder: Path, limit: int) -> Path:
    """Write ``upload`` into ``folder`` under a fresh name; refuse it past ``limit`` bytes or empty."""
    suffix = Path(upload.filename or "").suffix.lower()
    path = folder / f"upload-{uuid.uuid4().hex}{suffix if suffix in MEDIA_SUFFIXES else '.media'}"
    size = 0
    with open(path, "wb") as handle:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > limit:
                handle.close()
                path.unlink(missing_ok=True)
                raise UploadRefused(f"the clip is larger than the server's limit of {limit / 2 ** 20:g} MB "
                                    f"(hcm serve --max-upload-mb)")
            handle.write(chunk)
    if size == 0:
        path.unlink(missing_ok=True)
        raise UploadRefused("no clip was uploaded (the file is empty or none was chosen)")
    return path


async def probe_upload(path: Path, seconds: float, shown_name: str) -> None:
    """Decode ``path`` in a worker process; :class:`UploadRefused` when it is not a clip or takes
    longer than ``seconds`` (the worker is then killed)."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hcm.apps.serve.probe", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(worker.communicate(), timeout=seconds)
    except asyncio.TimeoutError:
        worker.kill()
        await worker.wait()
        raise UploadRefused(f"{shown_name} did not decode within {seconds:g} s; upload a shorter clip") from None
    try:
        found = json.loads(out.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError):
        found = {"ok": False, "error": f"the decoding worker stopped (exit status {worker.returncode})"}
    if not found.get("ok"):
        raise UploadRefused(f"{shown_name} is not a usable clip: {found.get('error')}")
