"""The console's routes (see :mod:`hub.console`).

Every page needs a session (else a redirect to the sign-in page); every action is a POST that needs a session of
the ``operator`` role (403 for ``read_only``) and its CSRF token, in the ``X-CSRF-Token`` header (htmx sends it
from the page's ``hx-headers``) or a ``csrf`` form field. Answers are never cached, never framed, and run no
script but the vendored htmx (Content-Security-Policy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.resources import files
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs

import anyio.to_thread
import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console.auth import COOKIE, SESSION_S, Operator, Operators, Sessions, csrf_ok

__all__ = ["ConsoleData", "console_router"]

T = TypeVar("T")
_HTMX = files("hub.console") / "static" / "htmx.min.js"
_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "frame-ancestors 'none'; form-action 'self'"}


class ConsoleData(Protocol):
    """What the console shows and does, as plain data (the composition root implements it)."""

    def health(self) -> list[dict[str, Any]]:
        """Each dependency: ``name``, ``ok``, ``detail``."""
        ...

    def overview(self) -> dict[str, Any]:
        """``numbers`` [(label, value)], ``exceptions_by_owner``, ``held_by_code``, ``dead_by_actor``."""
        ...

    def cases(self, owner: str | None) -> list[dict[str, Any]]:
        """The open and acknowledged cases (of ``owner``), oldest first."""
        ...

    def owners(self) -> list[str]:
        """The owners cases are routed to."""
        ...

    def acknowledge(self, case_id: str, by: str) -> dict[str, Any]:
        """Acknowledge a case; the case now."""
        ...

    def resolve(self, case_id: str, by: str, retry: bool) -> dict[str, Any]:
        """Resolve a case (replaying its dead letters first with ``retry``); the case now, with ``replayed``."""
        ...

    def held(self) -> list[dict[str, Any]]:
        """The held invoices."""
        ...

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every actor's dead letters: ``actor``, ``message_id``, ``event_id``, ``event_type``, ``death``, ``why``,
        ``error``."""
        ...

    def replay(self, actor: str, message_id: str) -> list[str]:
        """Replay one dead letter; the ids replayed."""
        ...

    def journey(self, event_id: str) -> list[dict[str, Any]]:
        """The flight record's hops of the journey ``event_id`` belongs to, with ``offset_ms``."""
        ...

    def jobs(self) -> list[dict[str, Any]]:
        """The scheduled jobs with their last runs."""
        ...

    def reconciliation(self, run_id: str | None, code: str | None) -> dict[str, Any]:
        """The latest reconciliation runs, one run's counts per class (the newest when ``run_id`` is None) and its
        differences (only class ``code`` when given)."""
        ...


async def _run(call: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(call)


def console_router(data: ConsoleData, *, operators: Operators, sessions: Sessions, trace_url: str | None = None,
                   flight_ttl_days: int = 7) -> APIRouter:
    """The console's routes under ``/console``."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader("hub.console", "templates"), autoescape=True)
    router = APIRouter(prefix="/console", include_in_schema=False)

    def page(name: str, operator: Operator | None, path: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = environment.get_template(name).render(operator=operator, page=path, **values)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def session(request: Request) -> Operator | None:
        return sessions.read(request.cookies.get(COOKIE))

    async def form(request: Request) -> Mapping[str, list[str]]:
        raw = (await request.body()).decode("utf-8", "replace")
        return parse_qs(raw, max_num_fields=10)

    async def acting(request: Request) -> Operator | Response:
        """The operator allowed to act, or the answer refusing the request."""
        operator = session(request)
        if operator is None:
            return Response("sign in first", status_code=401, headers=_HEADERS)
        sent = request.headers.get("x-csrf-token") or (await form(request)).get("csrf", [""])[0]
        if not csrf_ok(operator, sent):
            return Response("missing or wrong CSRF token", status_code=403, headers=_HEADERS)
        if not operator.may_act:
            return Response("a read-only operator may not act", status_code=403, headers=_HEADERS)
        return operator

    def signed_out() -> RedirectResponse:
        return RedirectResponse("/console/login", status_code=303, headers=_HEADERS)

    @router.get("/static/htmx.min.js")
    async def htmx() -> Response:
        return Response(_HTMX.read_bytes(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})

    @router.get("/login")
    async def login_page(request: Request) -> HTMLResponse:
        return page("login.html", None, "/console/login", title="Sign in", failed=False)

    @router.post("/login")
    async def login(request: Request) -> Response:
        key = (await form(request)).get("key", [""])[0]
        operator = operators.sign_in(key) if key else None
        if operator is None:
            return page("login.html", None, "/console/login", status=401, title="Sign in", failed=True)
        cookie, _ = sessions.issue(operator)
        response = RedirectResponse("/console", status_code=303, headers=_HEADERS)
        response.set_cookie(COOKIE, cookie, max_age=SESSION_S, httponly=True, samesite="strict", path="/console",
                            secure=request.url.scheme == "https")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        operator = session(request)
        if operator is not None and not csrf_ok(operator, (await form(request)).get("csrf", [""])[0]):
            return Response("missing or wrong CSRF token", status_code=403, headers=_HEADERS)
        response = signed_out()
        response.delete_cookie(COOKIE, path="/console")
        return response

    @router.get("")
    async def overview(request: Request) -> Response:
        operator = session(request)
        if operator is None:
            return signed_out()
        health, numbers = await _run(data.health), await _run(data.overview)
        return page("overview.html", operator, "/console", title="Overview", health=health, overview=numbers)

    @router.get("/exceptions")
    async def exceptions(request: Request, owner: str | None = None) -> Response:
        operator = session(request)
        if operator is None:
            return signed_out()
        cases = await _run(lambda: data.cases(owner or None))
        return page("exceptions.html", operator, "/console/exceptions", title="Exceptions", cases=cases,
                    owner=owner, owners=await _run(data.owners))

    @router.post("/exceptions/{case_id}/acknowledge")
    async def acknowledge(case_id: str, request: Request) -> Response:
        operator = await acting(request)
        if not isinstance(operator, Operator):
            return operator
        case = await _run(lambda: data.acknowledge(case_id, f"console:{operator.name}"))
        return page("case_row.html", operator, "/console/exceptions", case=case)

    @router.post("/exceptions/{case_id}/resolve")
    async def resolve(case_id: str, request: Request, retry: str | None = None) -> Response:
        operator = await acting(request)
        if not isinstance(operator, Operator):
            return operator
        case = await _run(lambda: data.resolve(case_id, f"console:{operator.name}", bool(retry)))
        return page("case_row.html", operator, "/console/exceptions", case=case)

    @router.get("/invoices")
    async def invoices(request: Request) -> Response:
        operator = session(request)
        if operator is None:
            return signed_out()
        return page("invoices.html", operator, "/console/invoices", title="Held invoices",
                    invoices=await _run(data.held))

    @router.get("/dead-letters")
    async def dead_letters(request: Request) -> Response:
        operator = session(request)
        if operator is None:
            return signed_out()
        unavailable = None
        try:
            letters = await _run(data.dead_letters)
        except Exception as exc:  # RabbitMQ away: the page says so
            letters, unavailable = [], f"the dead letters cannot be read now ({type(exc).__name__})"
        return page("dead_letters.html", operator, "/console/dead-letters", title="Dead letters", letters=letters,
                    unavailable=unavailable)

    @router.post("/dead-letters/{actor}/{message_id}/replay")
    async def replay(actor: str, message_id: str, request: Request) -> Response:
        operator = await acting(request)
        if not isinstance(operator, Operator):
            return operator
        replayed = await _run(lambda: data.replay(actor, message_id))
        letter = {"actor": actor, "message_id": message_id, "event_id": "", "event_type": "", "death": "",
                  "why": "replayed by " + operator.name if replayed else "not found (replayed already?)",
                  "error": "", "replayed": bool(replayed)}
        return page("letter_row.html", operator, "/console/dead-letters", letter=letter)

    @router.get("/journey")
    async def journey(request: Request, event_id: str | None = None) -> Response:
        operator = session(request)
        if operator is None:
            return signed_out()
        hops = await _run(lambda: data.journey(event_id)) if event_id else []
        return page("journey.html", operator, "/console/journey", title="Journeys", event_id=event_id, hops=hops,
                    trace_url=trace_url, ttl_days=flight_ttl_days)

    @router.get("/jobs")
    async def jobs(request: Request) -> Response:
        operator = session(request)
        if operator is None:
            return signed_out()
        return page("jobs.html", operator, "/console/jobs", title="Jobs", jobs=await _run(data.jobs))

    @router.get("/reconciliation")
    async def reconciliation(request: Request, run: str | None = None, code: str | None = None) -> Response:
        operator = session(request)
        if operator is None:
            return signed_out()
        report = await _run(lambda: data.reconciliation(run, code))
        return page("reconciliation.html", operator, "/console/reconciliation", title="Reconciliation", **report)

    return router
