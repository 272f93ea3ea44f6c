"""What ``hcm serve`` was started with: workspace, address, access token and upload limit.

Loads nothing of the web stack, so ``hcm serve --help`` and the option checks stay light.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote

from hcm.core.errors import UsageError
from hcm.core.workspace import Workspace

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN = 16  # characters of a token given with --token
DEFAULT_PORT = 8765
DEFAULT_UPLOAD_MB = 50.0


@dataclass(frozen=True)
class ServeSettings:
    """One server's settings (``token`` None: no token asked, only on a loopback address)."""

    workspace: Workspace
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    max_upload_mb: float = DEFAULT_UPLOAD_MB
    probe_seconds: float = 20.0  # time limit of the worker that decodes an upload
    device: str = "auto"  # where run models and encoders run

    @classmethod
    def checked(cls, workspace: Workspace, host: str, port: int, token: str | None,
                max_upload_mb: float) -> "ServeSettings":
        """Settings from the command line: a non-loopback host always gets a token (the one given,
        else a new random one); a given token must be long enough to resist guessing."""
        if token is not None and len(token) < MIN_TOKEN:
            raise UsageError(f"--token has {len(token)} characters; give at least {MIN_TOKEN} (or leave it out "
                             f"and hcm serve makes one)")
        if not 0 < port <= 65535:
            raise UsageError(f"--port {port} is not a TCP port; give 1-65535 (default {DEFAULT_PORT})")
        if max_upload_mb <= 0:
            raise UsageError(f"--max-upload-mb {max_upload_mb:g} must be above 0 (megabytes per uploaded clip)")
        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(24)
        return cls(workspace, host, port, token, max_upload_mb)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def allowed_hosts(self) -> list[str]:
        """Host headers answered: on loopback only loopback names (a DNS-rebound name is refused);
        elsewhere any, since the token guards every request."""
        return list(LOOPBACK) + ["[::1]"] if self.token is None else ["*"]

    @property
    def url(self) -> str:
        """The address to open, with the token when there is one."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"http://{host}:{self.port}/"
        return base + (f"?token={quote(self.token)}" if self.token else "")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")
