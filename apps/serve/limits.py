"""The request body limit: an upload past ``--max-upload-mb`` is answered with a page that says so.

A body announced larger than the limit is read and dropped (up to ``DRAIN_FACTOR`` times the
limit, so the browser finishes sending and shows the answer rather than a broken connection),
then refused; a body without a length is counted as it arrives and refused once past the limit.
"""

from __future__ import annotations

from typing import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_FACTOR = 4
FORM_OVERHEAD = 64 * 1024  # the form's other fields and multipart headers beside the clip


class TooLarge(HTTPException):
    """A request body past the limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the upload is larger than this server's limit of {limit / 2 ** 20:g} MB "
                              f"(hcm serve --max-upload-mb); choose a shorter or smaller clip")


class BodyLimit:
    """ASGI middleware refusing request bodies over ``limit`` bytes (and the form's overhead) with
    ``page(error)``."""

    def __init__(self, app: ASGIApp, limit: int, page: Callable[[HTTPException], Response]) -> None:
        self.app, self.upload_limit, self.page = app, limit, page
        self.limit = limit + FORM_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = Headers(scope=scope).get("content-length")
        if announced and announced.isdigit() and int(announced) > self.limit:
            await self.drain(receive, min(int(announced), DRAIN_FACTOR * self.limit))
            await self.page(TooLarge(self.upload_limit))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge(self.upload_limit)
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def drain(receive: Receive, most: int) -> None:
        read = 0
        while read <= most:
            message = await receive()
            read += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return
