"""Bulk seeding of the ERP simulator (``POST /_sim/seed``): many clients and projects at once, no webhooks.

The body is ``{"clients": [...], "projects": [...]}``, each record in the shape the API takes (``POST /clients``,
``POST /projects``) or returns (``version`` and ``updated_at`` may then be given too: a seeded ``updated_at``
places the record in the modified-since listing; without one it gets the clock's time). Everything is checked
before anything is stored, so a refused seed stores nothing: a record that does not validate is 422
``validation_failed`` with ``details`` (``loc`` from ``body``), a taken id or code 409 ``conflict``, a project
of an unknown client 422 ``unknown_client``, as the API answers one record at a time.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from simulators.erp.models import ClientIn, ProjectIn
from simulators.erp.state import ErpState
from simulators.erp.webhooks import parse_timestamp
from simulators.kit.bulk import collector_paused
from simulators.kit.errors import SimError


class _Stamped(BaseModel):
    """What a record may carry besides what the API takes: the fields the API answers with."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(default=1, ge=1)
    updated_at: str | None = None


class SeedClient(ClientIn, _Stamped):
    """A client as ``POST /clients`` takes it or ``GET /clients/{id}`` answers it."""


class SeedProject(ProjectIn, _Stamped):
    """A project as ``POST /projects`` takes it or ``GET /projects/{code}`` answers it."""


class SeedBody(BaseModel):
    """``{"clients": [...], "projects": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    clients: list[SeedClient] = Field(default_factory=list)
    projects: list[SeedProject] = Field(default_factory=list)


_BODY = TypeAdapter(SeedBody)


def _refused(loc: list[Any], msg: str) -> SimError:
    return SimError(422, "validation_failed", "the request is not valid", details=[{"loc": ["body", *loc], "msg": msg}])


def _record(model: BaseModel, kind: str, index: int) -> dict[str, Any]:
    record = model.model_dump(mode="json")
    if record["updated_at"] is not None:
        try:
            parse_timestamp(record["updated_at"])
        except ValueError:
            raise _refused([kind, index, "updated_at"], "must be an ISO 8601 timestamp") from None
    return record


def seed(state: ErpState, raw: bytes) -> dict[str, int]:
    """Check a seed body and store its records; answers how many of each were stored."""
    with collector_paused():
        return _seed(state, raw)


def _seed(state: ErpState, raw: bytes) -> dict[str, int]:
    try:
        body = _BODY.validate_json(raw or b"{}")
    except ValidationError as exc:
        details = [{"loc": ["body", *e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()[:20]]
        raise SimError(422, "validation_failed", "the request is not valid", details=details) from None
    clients: list[dict[str, Any]] = []
    for index, client in enumerate(body.clients):
        if client.id is None:
            raise _refused(["clients", index, "id"], "a seeded client needs an id")
        clients.append(_record(client, "clients", index))
    projects = []
    for index, project in enumerate(body.projects):
        record = _record(project, "projects", index)
        record["custom_fields"] = {"workspace_url": None, **record["custom_fields"]}
        projects.append(record)
    with state.lock:
        _check_keys(state, clients, projects)
        state.insert_bulk(clients, projects)
    return {"clients": len(clients), "projects": len(projects)}


def _check_keys(state: ErpState, clients: list[dict[str, Any]], projects: list[dict[str, Any]]) -> None:
    """409 for an id or code taken (in the ERP or earlier in the seed); 422 for a project of an unknown client."""
    client_ids: set[str] = set()
    for client in clients:
        if client["id"] in state.clients or client["id"] in client_ids:
            raise SimError(409, "conflict", f"client {client['id']!r} exists")
        client_ids.add(client["id"])
    codes: set[str] = set()
    for project in projects:
        if project["code"] in state.projects or project["code"] in codes:
            raise SimError(409, "conflict", f"project {project['code']!r} exists")
        codes.add(project["code"])
        if project["client_id"] not in client_ids and project["client_id"] not in state.clients:
            raise SimError(422, "unknown_client", f"client {project['client_id']!r} does not exist")
