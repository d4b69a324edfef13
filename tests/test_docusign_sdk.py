"""The DocuSign simulator driven by DocuSign's own Python SDK (``docusign-esign``), unchanged but for its host
and token: every call the hub's client makes and every route the simulator serves answer as the SDK expects
from DocuSign, errors included."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from docusign_esign import (
    ApiClient,
    CustomFields,
    Document,
    Envelope,
    EnvelopeDefinition,
    EnvelopesApi,
    Recipients,
    Signer,
    TextCustomField,
)
from docusign_esign.client.api_exception import ApiException

from hub.ingress.server import serve_in_thread
from simulators.docusign import DocuSignSimConfig, create_app

TOKEN = "ds-sdk-test-token"
ACCOUNT = "7c3f9a10-52d4-4e8b-a1f6-0d2e3b4c5a69"
PDF = b"%PDF-1.7\n% SOW GLOBEX-2027-003\n%%EOF\n"
CHANGE = b"%PDF-1.7\n% change order 1\n%%EOF\n"
NO_ENVELOPE = {"errorCode": "ENVELOPE_DOES_NOT_EXIST",
               "message": "The envelope specified either does not exist or you have no rights to it."}


@dataclass
class Sdk:
    """The SDK's envelopes API on the simulator, and the simulator's address."""

    envelopes: EnvelopesApi
    url: str


@pytest.fixture(scope="module")
def sdk() -> Iterator[Sdk]:
    with serve_in_thread(create_app(DocuSignSimConfig(token=TOKEN))) as url:
        client = ApiClient(host=f"{url}/restapi")
        client.set_default_header("Authorization", f"Bearer {TOKEN}")
        yield Sdk(EnvelopesApi(client), url)


def definition(status: str | None = None) -> EnvelopeDefinition:
    """An SOW and a change order for two signers, with the custom fields the hub reads."""
    return EnvelopeDefinition(
        email_subject="Please DocuSign: SOW GLOBEX-2027-003",
        documents=[Document(document_id="1", name="SOW GLOBEX-2027-003.pdf", file_extension="pdf",
                            document_base64=base64.b64encode(PDF).decode()),
                   Document(document_id="2", name="Change order 1.pdf", file_extension="pdf",
                            document_base64=base64.b64encode(CHANGE).decode())],
        recipients=Recipients(signers=[
            Signer(name="Grace Hopper", email="g.hopper@globex.example", recipient_id="1", routing_order="1",
                   role_name="client_signatory"),
            Signer(name="Alan Turing", email="a.turing@firm.example", recipient_id="2", routing_order="2"),
        ]),
        custom_fields=CustomFields(text_custom_fields=[
            TextCustomField(name="project_code", value="GLOBEX-2027-003"),
            TextCustomField(name="document_class", value="SOW"),
        ]),
        status=status,
    )


def error_body(caught: pytest.ExceptionInfo[ApiException]) -> dict[str, str]:
    body: dict[str, str] = json.loads(caught.value.body)
    return body


def test_an_envelope_definition_without_status_is_a_draft_and_with_status_sent_is_sent(sdk: Sdk) -> None:
    draft = sdk.envelopes.create_envelope(ACCOUNT, envelope_definition=definition())
    assert draft.status == "created" and draft.envelope_id
    assert sdk.envelopes.get_envelope(ACCOUNT, draft.envelope_id).sent_date_time is None
    sent = sdk.envelopes.create_envelope(ACCOUNT, envelope_definition=definition("sent"))
    assert sent.status == "sent"
    envelope = sdk.envelopes.get_envelope(ACCOUNT, sent.envelope_id)
    assert envelope.status == "sent" and envelope.sent_date_time
    sdk.envelopes.update(ACCOUNT, draft.envelope_id, envelope=Envelope(status="sent"))
    assert sdk.envelopes.get_envelope(ACCOUNT, draft.envelope_id).status == "sent"


def test_get_envelope_has_recipients_custom_fields_and_documents_only_when_included(sdk: Sdk) -> None:
    envelope_id = sdk.envelopes.create_envelope(ACCOUNT, envelope_definition=definition("sent")).envelope_id
    plain = sdk.envelopes.get_envelope(ACCOUNT, envelope_id)
    assert plain.envelope_id == envelope_id
    assert (plain.recipients, plain.custom_fields, plain.envelope_documents) == (None, None, None)
    assert plain.documents_uri == f"/envelopes/{envelope_id}/documents"
    documents = sdk.envelopes.get_envelope(ACCOUNT, envelope_id, include="documents")  # what the hub asks
    assert [d.document_id for d in documents.envelope_documents] == ["1", "2", "certificate"]
    assert documents.recipients is None
    full = sdk.envelopes.get_envelope(ACCOUNT, envelope_id, include="recipients,custom_fields,documents")
    assert [(s.email, s.status) for s in full.recipients.signers] == [
        ("g.hopper@globex.example", "sent"), ("a.turing@firm.example", "sent")]
    assert {f.name: f.value for f in full.custom_fields.text_custom_fields} == {
        "project_code": "GLOBEX-2027-003", "document_class": "SOW"}
    assert [d.name for d in full.envelope_documents if d.type == "content"] == [
        "SOW GLOBEX-2027-003.pdf", "Change order 1.pdf"]


def test_documents_are_listed_downloaded_one_by_one_and_combined(sdk: Sdk) -> None:
    envelope_id = sdk.envelopes.create_envelope(ACCOUNT, envelope_definition=definition("sent")).envelope_id
    listed = sdk.envelopes.list_documents(ACCOUNT, envelope_id)
    assert listed.envelope_id == envelope_id
    assert [(d.document_id, d.type) for d in listed.envelope_documents] == [
        ("1", "content"), ("2", "content"), ("certificate", "summary")]
    assert sdk.envelopes.get_document(ACCOUNT, "1", envelope_id) == PDF  # what the hub downloads
    assert sdk.envelopes.get_document(ACCOUNT, "2", envelope_id) == CHANGE
    combined = sdk.envelopes.get_document(ACCOUNT, "combined", envelope_id)
    assert combined.startswith(PDF + CHANGE) and b"certificate of completion" in combined  # DocuSign's default
    assert sdk.envelopes.get_document(ACCOUNT, "combined", envelope_id, certificate="false") == PDF + CHANGE
    assert sdk.envelopes.get_document(ACCOUNT, "certificate", envelope_id).startswith(b"%PDF")
    with pytest.raises(ApiException) as caught:
        sdk.envelopes.get_document(ACCOUNT, "9", envelope_id)
    assert caught.value.status == 400 and error_body(caught)["errorCode"] == "DOCUMENT_DOES_NOT_EXIST"


def test_custom_fields_and_recipients_are_read_on_their_own(sdk: Sdk) -> None:
    envelope_id = sdk.envelopes.create_envelope(ACCOUNT, envelope_definition=definition("sent")).envelope_id
    fields = sdk.envelopes.list_custom_fields(ACCOUNT, envelope_id)
    assert [(f.name, f.value) for f in fields.text_custom_fields] == [
        ("project_code", "GLOBEX-2027-003"), ("document_class", "SOW")]
    assert fields.list_custom_fields == []
    recipients = sdk.envelopes.list_recipients(ACCOUNT, envelope_id)
    assert [(s.name, s.recipient_id, s.routing_order) for s in recipients.signers] == [
        ("Grace Hopper", "1", "1"), ("Alan Turing", "2", "2")]
    assert recipients.recipient_count == "2"


def test_the_listing_takes_a_from_date_or_envelope_ids_and_refuses_neither(sdk: Sdk) -> None:
    first = sdk.envelopes.create_envelope(ACCOUNT, envelope_definition=definition("sent")).envelope_id
    second = sdk.envelopes.create_envelope(ACCOUNT, envelope_definition=definition()).envelope_id
    listed = sdk.envelopes.list_status_changes(ACCOUNT, from_date="2020-01-01")
    ids = [e.envelope_id for e in listed.envelopes]
    assert {first, second} <= set(ids) and int(listed.result_set_size) == len(ids)
    sent = sdk.envelopes.list_status_changes(ACCOUNT, from_date="2020-01-01", status="sent")
    assert first in {e.envelope_id for e in sent.envelopes} and second not in {e.envelope_id for e in sent.envelopes}
    chosen = sdk.envelopes.list_status_changes(ACCOUNT, envelope_ids=f"{first},{second}", include="recipients")
    assert sorted(e.envelope_id for e in chosen.envelopes) == sorted([first, second])
    assert all(e.recipients.signers for e in chosen.envelopes)
    assert sdk.envelopes.list_status_changes(ACCOUNT, from_date="2999-01-01").envelopes == []
    with pytest.raises(ApiException) as caught:
        sdk.envelopes.list_status_changes(ACCOUNT)
    assert caught.value.status == 400 and error_body(caught)["errorCode"] == "INVALID_REQUEST_PARAMETER"
    assert "'from_date' must be set" in error_body(caught)["message"]


@pytest.mark.parametrize("call", ["get_envelope", "list_documents", "list_recipients", "list_custom_fields",
                                  "get_document", "update"])
def test_an_unknown_envelope_raises_api_exception_400_with_docusigns_error_code(sdk: Sdk, call: str) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    calls = {
        "get_envelope": lambda: sdk.envelopes.get_envelope(ACCOUNT, unknown, include="documents"),
        "list_documents": lambda: sdk.envelopes.list_documents(ACCOUNT, unknown),
        "list_recipients": lambda: sdk.envelopes.list_recipients(ACCOUNT, unknown),
        "list_custom_fields": lambda: sdk.envelopes.list_custom_fields(ACCOUNT, unknown),
        "get_document": lambda: sdk.envelopes.get_document(ACCOUNT, "1", unknown),
        "update": lambda: sdk.envelopes.update(ACCOUNT, unknown, envelope=Envelope(status="sent")),
    }
    with pytest.raises(ApiException) as caught:
        calls[call]()
    assert caught.value.status == 400
    assert error_body(caught) == NO_ENVELOPE


def test_a_wrong_token_is_refused_with_401(sdk: Sdk) -> None:
    stranger = ApiClient(host=f"{sdk.url}/restapi")
    stranger.set_default_header("Authorization", "Bearer not-the-token")
    with pytest.raises(ApiException) as caught:
        EnvelopesApi(stranger).list_status_changes(ACCOUNT, from_date="2020-01-01")
    assert caught.value.status == 401 and "errorCode" in error_body(caught)


@pytest.mark.parametrize(("plan", "status", "code"), [
    ({"throttle_rate": 1.0}, 429, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"),
    ({"outage": True}, 503, "SERVICE_UNAVAILABLE"),
])
def test_an_injected_throttle_or_outage_raises_api_exception_with_docusigns_error_code_and_retry_after(
        sdk: Sdk, plan: dict[str, object], status: int, code: str) -> None:
    """The SDK's urllib3 honours ``Retry-After`` on a 429 or 503 three times before it raises: one second here."""
    httpx.put(f"{sdk.url}/_sim/faults", json={**plan, "retry_after_s": 1}).raise_for_status()
    try:
        with pytest.raises(ApiException) as caught:
            sdk.envelopes.list_status_changes(ACCOUNT, from_date="2020-01-01")
    finally:
        httpx.put(f"{sdk.url}/_sim/faults", json={}).raise_for_status()
    assert caught.value.status == status and error_body(caught)["errorCode"] == code
    assert caught.value.headers["Retry-After"] == "1"
