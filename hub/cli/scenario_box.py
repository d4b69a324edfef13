"""The demo's Box part: a legal matter the policy keeps on Box (the Corporate practice's), with its ethical wall,
provisioned beside the SharePoint engagements by the same hub; a conflict the ERP records later takes the walled
group's collaboration away."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["MATTER", "legal_matter_on_box"]

Echo = Callable[[str], None]
#: The demo's matter on Box.
MATTER = "MAT-GLOBEX-0042"
_WORKSPACE = f"Engagements/GLOBEX/{MATTER}"


def _folder(sandbox: Any) -> dict[str, Any] | None:
    """The matter's Box folder with its own collaborations (group -> role), metadata and retention policies."""
    state = sandbox.box_state()
    item = state["items"].get(_WORKSPACE)
    if item is None:
        return None
    folder = item["id"]
    return {"id": folder,
            "collaborations": {c["accessible_by"]["name"]: c["role"] for c in state["collaborations"]
                               if c["item"]["id"] == folder},
            "metadata": next(({k: v for k, v in m.items() if k not in ("item", "template") and not k.startswith("$")}
                              for m in state["metadata"] if m["item"] == folder), {}),
            "retention": sorted(a["retention_policy"]["policy_name"] for a in state["assignments"]
                                if a["assigned_to"]["id"] == folder)}


def legal_matter_on_box(sandbox: Any, echo: Echo, create_project: Callable[..., str],
                        update_project: Callable[..., None], timeout_s: float = 60.0) -> bool:
    """Open the matter in the ERP with a conflict on record, show its Box workspace and wall, then record a second
    conflict and show the walled group's collaboration removed; False when Box does not show it."""
    with sandbox.erp() as erp:
        erp.post("/clients", json={"id": "GLOBEX", "name": "Globex Corporation", "country": "US"}).raise_for_status()
    create_project(code=MATTER, client_id="GLOBEX", name="Globex acquisition of Initech", engagement_type="legal",
                   practice="Corporate", region="NA", country="US", billing_model="retainer",
                   conflicted_groups=["Knowledge-NA"])
    folder = _folder(sandbox)
    if folder is None:
        echo(f"FAILED: no Box folder {_WORKSPACE}")
        return False
    echo(f"10. legal matter {MATTER} for GLOBEX (Corporate, NA, US): the policy keeps Corporate matters on Box; "
         f"the ERP shows https://app.box.com/folder/{folder['id']}")
    roles = ", ".join(f"{group} ({role})" for group, role in sorted(folder["collaborations"].items()))
    echo(f"   Box: collaborations {roles}; retention policy {', '.join(folder['retention'])}")
    echo(f"   metadata ({len(folder['metadata'])} fields): "
         f"{', '.join(f'{k}={v}' for k, v in sorted(folder['metadata'].items()) if k in ('ProjectCode', 'Practice'))}")
    walled = [group for group in ("Knowledge-NA", "Contractors-NA") if group in folder["collaborations"]]
    echo("   ethical wall: Knowledge-NA (a conflict on record) and Contractors-* (the policy's) are not collaborators"
         if not walled else f"FAILED: walled groups collaborate: {', '.join(walled)}")
    update_project(MATTER, conflicted_groups=["Knowledge-NA", "Records-NA"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _folder(sandbox)
        if now is not None and "Records-NA" not in now["collaborations"]:
            echo("   the ERP then recorded a conflict with Records-NA: its Box collaboration was removed at once")
            return not walled
        time.sleep(0.2)
    echo("FAILED: Records-NA still collaborates on the matter after the ERP recorded the conflict")
    return False
