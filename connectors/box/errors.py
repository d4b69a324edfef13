"""Box's refusals as the hub's errors. Box answers an error as::

    {"type": "error", "status": 409, "code": "item_name_in_use", "message": "Item with the same name already exists",
     "context_info": {"conflicts": [...]}, "help_url": "...", "request_id": "abcdef123456"}

and each becomes a :class:`BoxRejected` (permanent) carrying ``status``, ``code``, ``request_id`` and
``context_info``; its message names the call, the status, Box's code and message and the request id (for Box
support), never a token or a secret::

    UpstreamRejected
     └── BoxRejected                  any other 4xx
          ├── BoxNotFound             404 not_found, instance_not_found, ...: no such item or record (also a
          │                           connectors.platform.ItemGone)
          ├── ItemNameInUse           409 item_name_in_use (``conflicts``: the existing items)
          ├── AlreadyCollaborator     400 user_already_collaborator
          ├── GroupNotFound           no enterprise group has the name a grant names
          ├── RetentionPolicyNotFound no retention policy has the name a rule names (also a
          │                           connectors.platform.RetentionNotPublished)
          └── RetentionConflict       409: a policy at least as long is already assigned to the folder (also a
                                      connectors.platform.RetentionRefused)

5xx, 429 (with ``Retry-After``) and timeouts are ``UpstreamUnavailable`` (retryable) from
:class:`connectors.http.Http`; 401 after one fresh sign-in is a :class:`BoxRejected` with code ``unauthorized``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from connectors.platform import ItemGone, RetentionNotPublished, RetentionRefused
from hub.errors import UpstreamRejected

__all__ = ["AlreadyCollaborator", "BoxNotFound", "BoxRejected", "GroupNotFound", "ItemNameInUse",
           "RetentionConflict", "RetentionPolicyNotFound", "box_error"]


class BoxRejected(UpstreamRejected):
    """Box refused the request (a 4xx retrying cannot fix)."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request", request_id: str | None = None,
                 context_info: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.context_info: dict[str, Any] = dict(context_info or {})


class BoxNotFound(BoxRejected, ItemGone):
    """Box answered 404: no such folder, file, collaboration, template, instance or webhook (or no access)."""


class ItemNameInUse(BoxRejected):
    """Box answered 409 ``item_name_in_use``: the folder has an item of that name (case-insensitively)."""

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        """The existing items, from ``context_info.conflicts`` (a list, or one object on some endpoints)."""
        found = self.context_info.get("conflicts")
        if isinstance(found, Mapping):
            return [dict(found)]
        return [dict(c) for c in found or [] if isinstance(c, Mapping)]


class AlreadyCollaborator(BoxRejected):
    """Box answered 400 ``user_already_collaborator``: the group already collaborates on the item."""


class GroupNotFound(BoxRejected):
    """No enterprise group has the name a grant names (or several do): it cannot be granted."""


class RetentionPolicyNotFound(BoxRejected, RetentionNotPublished):
    """No retention policy of the enterprise has the name asked for (or several do)."""


class RetentionConflict(BoxRejected, RetentionRefused):
    """Box refused a retention assignment (409): a policy at least as long is assigned to the folder already."""


_BY_CODE: dict[str, type[BoxRejected]] = {"item_name_in_use": ItemNameInUse,
                                          "user_already_collaborator": AlreadyCollaborator}


def box_error(response: httpx.Response, call: str) -> BoxRejected:
    """The error for a 4xx answer of Box to ``call`` (``"POST /folders"``), read from Box's error body."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, Mapping) else {}
    status = response.status_code
    code = str(body.get("code") or ("unauthorized" if status == 401 else "unknown"))
    message = str(body.get("message") or response.reason_phrase)
    request_id = body.get("request_id")
    context = body.get("context_info") if isinstance(body.get("context_info"), Mapping) else None
    text = f"box: {call} answered {status} {code}: {message}"
    if request_id:
        text += f" (request id {request_id})"
    kind = _BY_CODE.get(code) or (BoxNotFound if status == 404 else BoxRejected)
    return kind(text, status=status, code=code, request_id=str(request_id) if request_id else None,
                context_info=context)
