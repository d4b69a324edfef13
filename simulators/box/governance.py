"""Metadata templates and instances, retention policies and their assignments, under ``/2.0``::

    GET    /2.0/metadata_templates/{scope}/{template_key}/schema     a template; 404 when missing
    POST   /2.0/metadata_templates/schema                            create (scope enterprise): 201
    PUT    /2.0/metadata_templates/{scope}/{template_key}/schema     operations: addField
    GET    /2.0/folders/{id}/metadata/{scope}/{template_key}         an instance; 404 instance_not_found
    POST   /2.0/folders/{id}/metadata/{scope}/{template_key}         201; 409 tuple_already_exists;
                                                                     400 schema_validation_failed
    PUT    /2.0/folders/{id}/metadata/{scope}/{template_key}         JSON Patch: add, replace, remove, test
    (the same three under /2.0/files/{id}/metadata/...: a file's instance)
    GET    /2.0/retention_policies?policy_name=                      a case-sensitive name prefix (marker paging)
    POST   /2.0/retention_policy_assignments                         to a folder: 201; 409 when a policy at least
                                                                     as long is assigned to it already
    GET    /2.0/retention_policies/{id}/assignments?type=folder      marker paging
    GET|DELETE /2.0/retention_policy_assignments/{id}

A scope is ``enterprise`` (or ``enterprise_<id>``); the root folder takes no metadata (405).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from simulators.box.model import ROOT_ID, BoxError, Json, bad_request, box_time, not_found
from simulators.box.routes import page_by_marker
from simulators.box.state import BoxState

_FIELD_TYPES = {"string", "float", "date", "enum", "multiSelect"}
_KEY = re.compile(r"^[a-zA-Z_][-a-zA-Z0-9_]*$")


class _Field(BaseModel):
    type: str
    key: str | None = None
    displayName: str
    description: str | None = None
    hidden: bool = False
    options: list[dict[str, str]] | None = None


class _NewTemplate(BaseModel):
    scope: str
    templateKey: str | None = None
    displayName: str
    hidden: bool = False
    fields: list[_Field] = []
    copyInstanceOnItemCopy: bool = False


class _AssignTo(BaseModel):
    type: Literal["enterprise", "folder", "metadata_template"]
    id: str | None = None


class _NewAssignment(BaseModel):
    policy_id: str
    assign_to: _AssignTo


def _camel(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)
    return (words[0][:1].lower() + words[0][1:] + "".join(w[:1].upper() + w[1:] for w in words[1:])) if words else ""


def governance_routes(state: BoxState) -> APIRouter:
    """The metadata and retention routes (mount under ``/2.0``)."""
    routes = APIRouter()
    enterprise_scope = f"enterprise_{state.config.enterprise_id}"

    def scope_of(scope: str) -> str:
        if scope not in {"enterprise", enterprise_scope, "global"}:
            raise bad_request("Invalid scope")
        return "global" if scope == "global" else enterprise_scope

    def template(scope: str, key: str) -> Json:
        found = state.templates.get(key) if scope_of(scope) == enterprise_scope else None
        if found is None:
            raise not_found("Template not found")
        return found

    def new_field(spec: _Field, taken: set[str]) -> Json:
        key = spec.key or _camel(spec.displayName)
        if spec.type not in _FIELD_TYPES or not _KEY.match(key) or key in taken:
            raise bad_request(f"Invalid field {key!r}")
        field: Json = {"id": str(uuid.uuid4()), "type": spec.type, "key": key, "displayName": spec.displayName,
                       "hidden": spec.hidden}
        if spec.description is not None:
            field["description"] = spec.description
        if spec.type in {"enum", "multiSelect"}:
            field["options"] = [{"id": str(uuid.uuid4()), "key": o["key"]} for o in spec.options or []]
        return field

    @routes.get("/metadata_templates/{scope}/{template_key}/schema")
    def get_template(scope: str, template_key: str) -> Json:
        with state.lock:
            return template(scope, template_key)

    @routes.post("/metadata_templates/schema", status_code=201)
    def create_template(body: _NewTemplate) -> Json:
        if body.scope != "enterprise":
            raise BoxError(403, "forbidden", "Only enterprise templates may be created")
        key = body.templateKey or _camel(body.displayName)
        if not _KEY.match(key) or len(key) > 64:
            raise bad_request("Invalid templateKey")
        with state.lock:
            if key in state.templates:
                raise bad_request(f"A template with the key {key} already exists")
            fields: list[Json] = []
            for spec in body.fields:
                fields.append(new_field(spec, {f["key"] for f in fields}))
            created = {"id": str(uuid.uuid4()), "type": "metadata_template", "scope": enterprise_scope,
                       "templateKey": key, "displayName": body.displayName, "hidden": body.hidden,
                       "fields": fields, "copyInstanceOnItemCopy": body.copyInstanceOnItemCopy}
            state.templates[key] = created
            return created

    @routes.put("/metadata_templates/{scope}/{template_key}/schema")
    def change_template(scope: str, template_key: str, operations: list[dict[str, Any]]) -> Json:
        with state.lock:
            found = template(scope, template_key)
            for operation in operations:
                if operation.get("op") != "addField":
                    raise bad_request(f"Unsupported operation {operation.get('op')!r}")
                spec = _Field.model_validate(operation.get("data") or {})
                found["fields"].append(new_field(spec, {f["key"] for f in found["fields"]}))
            return found

    def instance_key(item_id: str, scope: str, template_key: str, request: Request) -> tuple[str, str]:
        if item_id == ROOT_ID:
            raise BoxError(405, "method_not_allowed", "Method Not Allowed")
        state.item(item_id, kind_of(request))
        return item_id, template(scope, template_key)["templateKey"]

    def kind_of(request: Request) -> Literal["folder", "file"]:
        return "file" if request.url.path.split("/")[2:3] == ["files"] else "folder"

    def check_values(template_key: str, values: dict[str, Any]) -> None:
        fields = {f["key"]: f for f in state.templates[template_key]["fields"]}
        for key, value in values.items():
            field = fields.get(key)
            ok = field is not None and {
                "string": isinstance(value, str), "date": isinstance(value, str),
                "float": isinstance(value, int | float) and not isinstance(value, bool),
                "enum": value in [o["key"] for o in field.get("options", [])],
                "multiSelect": isinstance(value, list),
            }[field["type"]]
            if not ok:
                raise BoxError(400, "schema_validation_failed", f"Value for {key} is not valid for the template",
                               context_info={"errors": [{"name": key, "message": "Invalid value"}]})

    @routes.get("/folders/{folder_id}/metadata/{scope}/{template_key}")
    @routes.get("/files/{folder_id}/metadata/{scope}/{template_key}")
    def get_instance(folder_id: str, scope: str, template_key: str, request: Request) -> Json:
        with state.lock:
            found = state.instances.get(instance_key(folder_id, scope, template_key, request))
            if found is None:
                raise BoxError(404, "instance_not_found", "Instance not found")
            return found

    @routes.post("/folders/{folder_id}/metadata/{scope}/{template_key}", status_code=201)
    @routes.post("/files/{folder_id}/metadata/{scope}/{template_key}", status_code=201)
    def create_instance(folder_id: str, scope: str, template_key: str, values: dict[str, Any],
                        request: Request) -> Json:
        with state.lock:
            key = instance_key(folder_id, scope, template_key, request)
            if key in state.instances:
                raise BoxError(409, "tuple_already_exists", "Instance already exists")
            check_values(key[1], values)
            found = {"$id": str(uuid.uuid4()), "$type": f"{key[1]}-{state.templates[key[1]]['id'][:8]}",
                     "$parent": f"{kind_of(request)}_{folder_id}", "$scope": enterprise_scope, "$template": key[1],
                     "$version": 0, "$typeVersion": len(state.templates[key[1]]["fields"]), "$canEdit": True,
                     **values}
            state.instances[key] = found
            state.record("METADATA_INSTANCE_CREATE", "METADATA_INSTANCE_CREATE", "METADATA_INSTANCE.CREATED",
                         state.items[folder_id])
            return found

    @routes.put("/folders/{folder_id}/metadata/{scope}/{template_key}")
    @routes.put("/files/{folder_id}/metadata/{scope}/{template_key}")
    async def update_instance(folder_id: str, scope: str, template_key: str, request: Request) -> Json:
        try:
            operations = await request.json()
        except ValueError:
            raise bad_request("The body is not a JSON Patch array") from None
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            raise bad_request("The body is not a JSON Patch array")
        with state.lock:
            key = instance_key(folder_id, scope, template_key, request)
            found = state.instances.get(key)
            if found is None:
                raise BoxError(404, "instance_not_found", "Instance not found")
            values = {k: v for k, v in found.items() if not k.startswith("$")}
            for operation in operations:
                _patch(values, operation)
            check_values(key[1], values)
            found = {**{k: v for k, v in found.items() if k.startswith("$")}, **values}
            found["$version"] += 1
            state.instances[key] = found
            state.record("METADATA_INSTANCE_UPDATE", "METADATA_INSTANCE_UPDATE", "METADATA_INSTANCE.UPDATED",
                         state.items[folder_id])
            return found

    @routes.get("/retention_policies")
    def list_policies(policy_name: str | None = None, policy_type: str | None = None,
                      limit: Annotated[int | None, Query(ge=1, le=1000)] = None, marker: str | None = None) -> Json:
        if policy_type not in {None, "finite", "indefinite"}:
            raise bad_request("Invalid policy_type")
        with state.lock:
            found = [p for p in state.policies.values() if p["policy_name"].startswith(policy_name or "")
                     and policy_type in {None, p["policy_type"]}]
        return page_by_marker(found, marker, limit or state.config.page_size)

    @routes.post("/retention_policy_assignments", status_code=201)
    def assign(body: _NewAssignment) -> Json:
        if body.assign_to.type != "folder" or not body.assign_to.id:
            raise bad_request("This simulator assigns retention policies to folders only")
        with state.lock:
            policy = state.policies.get(body.policy_id)
            if policy is None:
                raise not_found("Retention policy not found")
            folder = state.item(body.assign_to.id, "folder")
            length = int(policy["retention_length"])
            if any(a["assigned_to"]["id"] == folder.id
                   and int(state.policies[a["retention_policy"]["id"]]["retention_length"]) >= length
                   for a in state.assignments.values()):
                raise BoxError(409, "conflict", "A retention policy of equal or greater length is already "
                                                "assigned to this item")
            assignment: Json = {"type": "retention_policy_assignment", "id": state.ids.next("assignment"),
                          "retention_policy": {k: policy[k] for k in ("type", "id", "policy_name",
                                                                      "retention_length", "disposition_action")},
                          "assigned_to": {"type": "folder", "id": folder.id}, "filter_fields": [],
                          "assigned_by": state.account.mini(), "assigned_at": box_time(),
                          "start_date_field": "upload_date"}
            state.assignments[assignment["id"]] = assignment
            return assignment

    @routes.get("/retention_policies/{policy_id}/assignments")
    def list_assignments(policy_id: str, type: str | None = None,
                         limit: Annotated[int | None, Query(ge=1, le=1000)] = None, marker: str | None = None) -> Json:
        if type not in {None, "folder", "enterprise", "metadata_template"}:
            raise bad_request("Invalid type")
        with state.lock:
            if policy_id not in state.policies:
                raise not_found("Retention policy not found")
            found = [a for a in state.assignments.values() if a["retention_policy"]["id"] == policy_id
                     and type in {None, a["assigned_to"]["type"]}]
        return page_by_marker(found, marker, limit or state.config.page_size)

    @routes.get("/retention_policy_assignments/{assignment_id}")
    def get_assignment(assignment_id: str) -> Json:
        with state.lock:
            found = state.assignments.get(assignment_id)
        if found is None:
            raise not_found()
        return found

    @routes.delete("/retention_policy_assignments/{assignment_id}", status_code=204)
    def remove_assignment(assignment_id: str) -> Response:
        with state.lock:
            if state.assignments.pop(assignment_id, None) is None:
                raise not_found()
        return Response(status_code=204)

    return routes


def _patch(values: dict[str, Any], operation: dict[str, Any]) -> None:
    """Apply one JSON Patch operation on a top-level key (``/key``), as Box's metadata instances take them."""
    op, path = operation.get("op"), operation.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "/" in path[1:]:
        raise bad_request("Invalid JSON Patch path")
    key = path[1:]
    if op in {"add", "replace"}:
        if "value" not in operation or (op == "replace" and key not in values):
            raise bad_request(f"Invalid {op} operation for {path}")
        values[key] = operation["value"]
    elif op == "remove":
        if values.pop(key, None) is None:
            raise bad_request(f"Nothing to remove at {path}")
    elif op == "test":
        if values.get(key) != operation.get("value"):
            raise bad_request(f"Test failed at {path}")
    else:
        raise bad_request(f"Unsupported JSON Patch operation {op!r}")
