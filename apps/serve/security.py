"""The server's guards: the access token, same-origin writes, and files only from inside the workspace.

- A server with a token (every non-loopback one) answers a request only when it carries the token
  as the query parameter ``token`` or the cookie set the first time it was given.
- A request that changes state (any method but GET, HEAD, OPTIONS) must come from the same origin
  (its ``Origin``, else ``Referer``, names the host it was sent to) or carry the token explicitly
  (query parameter or the ``X-HCM-Token`` header): a cookie alone does not do, since a page of
  another port of the same host would send it too.
- Every answer carries a content security policy: scripts, styles and media from this server only.
- :func:`workspace_file` turns a path from a request into a file inside the workspace, or refuses.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import Headers, QueryParams
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hcm.apps.predict_inputs import MEDIA_SUFFIXES
from hcm.core.files import leads_out

COOKIE = "hcm_token"
HEADER = "x-hcm-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
POLICY = ("default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
          "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
HEADERS = [(b"content-security-policy", POLICY.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
#: Files the server hands out from the workspace: media, pictures and the run's text files.
SERVED_SUFFIXES = MEDIA_SUFFIXES | {".ogg", ".png", ".jpg", ".jpeg", ".svg", ".csv", ".json", ".log", ".md", ".txt"}


class FileRefused(Exception):
    """A path from a request that does not name a servable file inside the workspace."""


def workspace_file(root: Path, relative: str) -> Path:
    """The file ``relative`` names inside ``root``: not absolute, no ``..``, no link that leads
    out, a regular file of a served kind; :class:`FileRefused` says which rule it broke."""
    if not relative or "\0" in relative or "\\" in relative:
        raise FileRefused("an empty or malformed path")
    if relative.startswith("/") or Path(relative).is_absolute() or (len(relative) > 1 and relative[1] == ":"):
        raise FileRefused(f"an absolute path ({relative}); paths are relative to the workspace")
    if ".." in Path(relative).parts:
        raise FileRefused(f"a path with '..' ({relative})")
    path = root / relative
    if leads_out(root, path):
        raise FileRefused(f"{relative} leads out of the workspace (a link?)")
    if not path.is_file():
        raise FileRefused(f"no file {relative} in the workspace")
    if path.suffix.lower() not in SERVED_SUFFIXES:
        raise FileRefused(f"{relative} is not a kind of file the server shows ({', '.join(sorted(SERVED_SUFFIXES))})")
    return path.resolve()


def same_token(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


def same_origin(headers: Headers) -> bool:
    """Whether ``Origin`` (else ``Referer``) names the host the request was sent to."""
    source = headers.get("origin") or headers.get("referer")
    host = headers.get("host")
    if not source or not host or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc == host


class Guard:
    """ASGI middleware: the token, same-origin writes and the security headers (module docstring)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        explicit = QueryParams(scope.get("query_string", b"")).get("token") or headers.get(HEADER)
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        has_token = self.token is None or same_token(explicit, self.token) or same_token(cookie, self.token)
        if not has_token:
            await refuse(scope, receive, send, 401, "This server asks for its access token. Open the address "
                         "hcm serve printed (it ends in ?token=...), or send the token as the query parameter "
                         "'token' or the header X-HCM-Token.")
            return
        writes = scope["method"] not in SAFE_METHODS
        if writes and not same_origin(headers) and not (self.token and same_token(explicit, self.token)):
            await refuse(scope, receive, send, 403, "This request would change something but comes from another "
                         "site (its Origin is not this server) and carries no token; send it from this server's "
                         "own pages.")
            return
        set_cookie = self.token is not None and same_token(explicit, self.token) and cookie != self.token

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(HEADERS)
                if set_cookie:
                    extra.append((b"set-cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_guarded)


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, why: str) -> None:
    """A small HTML page saying why, with the security headers."""
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hcm serve: refused</title>"
            f"</head><body><h1>Refused ({status})</h1><p class=\"error\">{why}</p></body></html>")
    response = HTMLResponse(page, status_code=status)
    response.raw_headers.extend(HEADERS)
    await response(scope, receive, send)
