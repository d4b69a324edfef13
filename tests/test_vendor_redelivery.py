"""Vendors deliver again when they are unsure: on every vendor route an identical re-delivery is a resend (2xx,
published once), and only the same event id with other vendor content is a conflict. Over real HTTP, RabbitMQ and
Redis."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hub.runtime import Runtime
from tests.support.ingress import Credentials
from tests.test_ingress_app import assert_problem, fanout_depth, ingress, sources_file  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def _notification(state: str, **changes: Any) -> dict[str, Any]:
    item = {"subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "clientState": state, "changeType": "updated",
            "resource": "drives/b!abc/root", "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "id": "1d5f0b1c-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
            "subscriptionExpirationDateTime": "2026-12-01T11:00:00.0000000Z",
            "resourceData": {"@odata.type": "#Microsoft.Graph.DriveItem", "id": "01ABCDEF"}}
    return {"value": [{**item, **changes}]}


def _posted_twice(post: Any) -> list[dict[str, Any]]:
    """The two answers of one delivery and its re-delivery: both 202, the second a resend of the first."""
    first, again = post(), post()
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    [accepted], [resent] = first.json()["accepted"], again.json()["accepted"]
    assert "resent" not in accepted and resent["resent"] is True and resent["id"] == accepted["id"]
    return [accepted, resent]


def test_graph_delivering_a_notification_again_gets_202_and_it_is_published_once(
        app: Runtime, ingress: tuple[str, Credentials]) -> None:  # noqa: F811 - the fixture
    """The event's data carries the moment the hub received it; the re-delivery is compared by what Graph sent."""
    url, creds = ingress
    target = f"{url}/v1/webhooks/graph/sharepoint"
    _posted_twice(lambda: httpx.post(target, json=_notification(creds.graph_state)))
    assert fanout_depth(app) == 1
    other_tenant = _notification(creds.graph_state, tenantId="00000000-0000-0000-0000-000000000001")
    assert_problem(httpx.post(target, json=other_tenant), 409, "id-conflict")  # same id, other content
    assert fanout_depth(app) == 1


def test_a_graph_notification_without_an_id_is_published_each_time_it_comes(
        app: Runtime, ingress: tuple[str, Credentials]) -> None:  # noqa: F811 - the fixture
    """SharePoint's driveItem notifications carry no id: a re-delivery and a second change look the same, and
    dropping one could leave a change unread, so each is published (a redundant delta read costs little)."""
    url, creds = ingress
    body = _notification(creds.graph_state)
    del body["value"][0]["id"]
    target = f"{url}/v1/webhooks/graph/sharepoint"
    answers = [httpx.post(target, json=body), httpx.post(target, json=body)]
    assert [a.status_code for a in answers] == [202, 202]
    assert not any(a.json()["accepted"][0].get("resent") for a in answers)
    assert fanout_depth(app) == 2


def test_docusign_connect_delivering_an_envelope_again_gets_202_and_it_is_published_once(
        app: Runtime, ingress: tuple[str, Credentials]) -> None:  # noqa: F811 - the fixture
    from tests.test_docusign_inbound import BODY, payload, sign

    url, creds = ingress
    target = f"{url}/v1/webhooks/docusign/docusign"

    def post(body: bytes = BODY) -> httpx.Response:
        return httpx.post(target, content=body, headers={"x-docusign-signature-1": sign(body, creds.docusign_key),
                                                          "content-type": "application/json"})

    _posted_twice(post)
    assert fanout_depth(app) == 1
    # The same envelope completed at the same moment, with another project: DocuSign never sends that.
    changed = payload()
    fields = changed["data"]["envelopeSummary"]["customFields"]["textCustomFields"]
    next(f for f in fields if f["name"] == "project_code")["value"] = "ENG-OTHER-0001"
    assert_problem(post(json.dumps(changed).encode()), 409, "id-conflict")
    assert fanout_depth(app) == 1


def test_box_delivering_a_webhook_again_gets_202_and_it_is_published_once(
        app: Runtime, ingress: tuple[str, Credentials]) -> None:  # noqa: F811 - the fixture
    """Box's retry has a new delivery id, timestamp and signatures around the same body."""
    from tests.test_box_inbound import PAYLOAD, sign, stamp

    url, creds = ingress
    body = json.dumps({**copy.deepcopy(PAYLOAD), "created_at": stamp(datetime.now(UTC))}).encode()
    attempt = iter(range(1, 10))

    def post() -> httpx.Response:
        sent = stamp(datetime.now(UTC) - timedelta(seconds=1))
        return httpx.post(f"{url}/v1/webhooks/box/box", content=body, headers={
            "BOX-DELIVERY-ID": f"673a081b-bb4b-4d45-b4f1-4131a29c1d0{next(attempt)}",
            "BOX-DELIVERY-TIMESTAMP": sent, "BOX-SIGNATURE-PRIMARY": sign(body, sent, creds.box_keys[0]),
            "BOX-SIGNATURE-SECONDARY": sign(body, sent, creds.box_keys[1]), "BOX-SIGNATURE-VERSION": "1",
            "BOX-SIGNATURE-ALGORITHM": "HmacSHA256", "content-type": "application/json"})

    _posted_twice(post)
    assert fanout_depth(app) == 1
