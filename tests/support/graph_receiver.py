"""A Graph change-notification endpoint for tests: it speaks the subscriber's side of Graph's handshake (the
``validationToken`` echoed as ``text/plain``) and records the notifications it is sent."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from connectors.sharepoint.inbound import validation_token


class Receiver:
    """Serve :attr:`app` (its endpoint is ``POST /notify``). ``echo=False`` answers the handshake with something
    else than the token; ``fail_first`` notifications are answered 503 before any is taken."""

    def __init__(self, *, echo: bool = True, fail_first: int = 0) -> None:
        self.echo = echo
        self.fail_first = fail_first
        #: Each handshake's token and the content type it came with.
        self.validations: list[tuple[str, str]] = []
        #: Each notification's raw body, in the order taken.
        self.bodies: list[bytes] = []
        self.app = FastAPI()
        self.app.post("/notify")(self.notify)

    async def notify(self, request: Request) -> Response:
        """Echo a validation token, or record a notification (failing the first few on purpose)."""
        token = validation_token(request.url.query)
        if token is not None:
            self.validations.append((token, request.headers.get("content-type", "")))
            return PlainTextResponse(token) if self.echo else Response('{"ok": true}', media_type="application/json")
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response(status_code=503)
        self.bodies.append(await request.body())
        return Response(status_code=202)
