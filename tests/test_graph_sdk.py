"""The Graph simulator driven by Microsoft's own SDK (msgraph-sdk), unchanged but for the base URL and a static
token: what an SDK user (and the hub's own client, which speaks the same API) sends, the simulator answers as
Graph does. The SDK is async; each test runs its calls with ``asyncio.run``.

The simulator's pre-authenticated URLs (downloads, upload sessions) name ``localhost`` while Graph calls go to
``127.0.0.1``, as a tenant's SharePoint host differs from graph.microsoft.com: the token provider gives the
token to the Graph host only, and the simulator refuses a pre-authenticated call that carries one.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from connectors.sharepoint.inbound import parse_notifications
from hub.ingress.server import serve_in_thread
from simulators.sharepoint import SimulatorConfig, create_app
from tests.support.graph_receiver import Receiver
from tests.support.graph_tenant import BARE
from tests.support.rabbit import wait_until
from tests.support.tls import loopback_tls

#: Where the SDK's own deprecation warnings come from (its request builders are imported as they are used).
_SDK_MODULES = r"(msgraph|kiota_abstractions)(\.|$)"
pytestmark = pytest.mark.filterwarnings(f"ignore::DeprecationWarning:{_SDK_MODULES}")

with warnings.catch_warnings():
    # msgraph-sdk 1.65 and kiota-abstractions 1.16 warn, as they define them, about their own deprecated
    # request-configuration classes, which the generated request builders still define and use.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=_SDK_MODULES)
    from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator
    from kiota_abstractions.authentication.base_bearer_token_authentication_provider import (
        BaseBearerTokenAuthenticationProvider,
    )
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_abstractions.method import Method
    from kiota_abstractions.request_information import RequestInformation
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.drives.item.items.item.create_upload_session.create_upload_session_post_request_body import (
        CreateUploadSessionPostRequestBody,
    )
    from msgraph.generated.drives.item.items.item.delta.delta_request_builder import DeltaRequestBuilder
    from msgraph.generated.drives.item.items.item.list_item.list_item_request_builder import ListItemRequestBuilder
    from msgraph.generated.models.drive_item import DriveItem
    from msgraph.generated.models.drive_item_uploadable_properties import DriveItemUploadableProperties
    from msgraph.generated.models.folder import Folder
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.subscription import Subscription
    from msgraph.generated.models.upload_session import UploadSession
    from msgraph_core import GraphClientFactory

TOKEN = "sdk-test-token"
DRIVE = "workspaces"
T = TypeVar("T")


class StaticToken(AccessTokenProvider):
    """The simulator's token, for the Graph host only (as the SDK's Azure provider limits it to Graph's hosts)."""

    def __init__(self, host: str) -> None:
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any] | None = None
                                      ) -> str:
        """The token, unless ``uri`` is on another host (a pre-authenticated URL)."""
        return TOKEN if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        """The Graph host."""
        return self._hosts


@dataclass
class Sdk:
    """The simulator's base URL and an SDK client factory on it."""

    url: str
    #: An https notification endpoint, and what it received.
    endpoint: str
    receiver: Receiver

    def run(self, calls: Callable[[GraphServiceClient], Awaitable[T]]) -> T:
        """Run ``calls`` with a fresh GraphServiceClient on the simulator's ``/v1.0`` (the SDK's own HTTP client
        and middleware, its base URL changed) in a fresh event loop."""
        async def main() -> T:
            transport = httpx.AsyncHTTPTransport()  # closed here: the SDK's middleware transport does not close it
            http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(transport=transport))
            try:
                adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken("127.0.0.1")),
                                              client=http)
                adapter.base_url = f"{self.url}/v1.0"
                return await calls(GraphServiceClient(request_adapter=adapter))
            finally:
                await http.aclose()
                await transport.aclose()
        return asyncio.run(main())

    def state(self) -> dict[str, Any]:
        """The simulator's admin view."""
        state: dict[str, Any] = httpx.get(f"{self.url}/_sim/state").json()
        return state


@pytest.fixture
def sdk(tmp_path: Path) -> Iterator[Sdk]:
    """The simulator (pre-authenticated URLs on ``localhost``, trusting the test's authority for notification
    endpoints), an https notification endpoint, and the SDK on the simulator."""
    tls, receiver = loopback_tls(tmp_path), Receiver()
    with serve_in_thread(receiver.app, tls=tls.server) as endpoint, \
            serve_in_thread(create_app(SimulatorConfig(token=TOKEN, drives=(DRIVE,), page_size=2, **BARE,
                                                       preauth_host="localhost", notify_ca_file=tls.ca))) as url:
        yield Sdk(url, f"{endpoint}/notify", receiver)


def folder(name: str, behavior: str = "fail") -> DriveItem:
    """A new folder's driveItem, with its conflict behaviour."""
    return DriveItem(name=name, folder=Folder(), additional_data={"@microsoft.graph.conflictBehavior": behavior})


def test_the_sdk_reads_the_drive_creates_folders_and_gets_409_for_an_existing_one(sdk: Sdk) -> None:
    async def calls(graph: GraphServiceClient) -> tuple[Any, ...]:
        drive = await graph.drives.by_drive_id(DRIVE).get()
        root = graph.drives.by_drive_id(DRIVE).items.by_drive_item_id("root")
        acme = await root.children.post(folder("ACME"))
        assert acme is not None and acme.id is not None
        for name in ("Contracts", "SOWs", "Invoices"):
            await graph.drives.by_drive_id(DRIVE).items.by_drive_item_id(acme.id).children.post(folder(name))
        with pytest.raises(ODataError) as conflict:
            await root.children.post(folder("ACME"))
        first = await graph.drives.by_drive_id(DRIVE).items.by_drive_item_id(acme.id).children.get()
        assert first is not None and first.odata_next_link  # page_size 2: a second page
        rest = await graph.drives.by_drive_id(DRIVE).items.by_drive_item_id(acme.id).children.with_url(
            first.odata_next_link).get()
        return drive, acme, conflict.value, first, rest

    drive, acme, conflict, first, rest = sdk.run(calls)
    assert drive.id == DRIVE and drive.drive_type == "documentLibrary"
    assert acme.name == "ACME" and acme.folder is not None
    assert conflict.response_status_code == 409 and conflict.error.code == "nameAlreadyExists"
    assert [c.name for c in [*first.value, *rest.value]] == ["Contracts", "Invoices", "SOWs"]
    assert rest.odata_next_link is None


def test_the_sdk_uploads_by_path_and_by_id_and_downloads_through_the_redirect(sdk: Sdk) -> None:
    async def calls(graph: GraphServiceClient) -> tuple[Any, ...]:
        items = graph.drives.by_drive_id(DRIVE).items
        acme = await items.by_drive_item_id("root").children.post(folder("ACME"))
        assert acme is not None and acme.id is not None
        by_path = await items.by_drive_item_id("root:/ACME/sow.pdf:").content.put(b"%PDF by path")
        by_parent = await items.by_drive_item_id(f"{acme.id}:/letter.pdf:").content.put(b"%PDF by parent id")
        assert by_path is not None and by_path.id is not None and by_parent is not None
        replaced = await items.by_drive_item_id(by_path.id).content.put(b"%PDF replaced by id")
        downloaded = await items.by_drive_item_id(by_path.id).content.get()
        other = await items.by_drive_item_id(str(by_parent.id)).content.get()
        return by_path, by_parent, replaced, downloaded, other

    by_path, by_parent, replaced, downloaded, other = sdk.run(calls)
    assert by_path.name == "sow.pdf" and by_path.file is not None and by_parent.name == "letter.pdf"
    assert replaced.id == by_path.id and replaced.size == len(b"%PDF replaced by id")
    assert downloaded == b"%PDF replaced by id" and other == b"%PDF by parent id"
    # The SDK followed the 302 to the pre-authenticated host without the token (it would have been refused).
    assert sdk.state()["transfers"]["preauthRefusedTokens"] == 0


def test_the_sdk_uploads_a_large_file_through_an_upload_session(sdk: Sdk) -> None:
    """The session from the SDK's request builder, its fragments PUT through the SDK's request adapter.

    msgraph-core 1.5.2's ``LargeFileUploadTask`` is not used: it cannot read an open range (``"983040-"``, the
    form of Graph's documented answers) and PUTs once more after the session has committed the file."""
    unit = 320 * 1024
    content = bytes(range(256)) * (7 * unit // 256) + b"end"

    async def calls(graph: GraphServiceClient) -> tuple[UploadSession, list[UploadSession], DriveItem, bytes]:
        items = graph.drives.by_drive_id(DRIVE).items
        await items.by_drive_item_id("root").children.post(folder("ACME"))
        body = CreateUploadSessionPostRequestBody(item=DriveItemUploadableProperties(
            additional_data={"@microsoft.graph.conflictBehavior": "replace"}))
        session = await items.by_drive_item_id("root:/ACME/drawings.zip:").create_upload_session.post(body)
        assert session is not None and session.upload_url
        progress: list[UploadSession] = []
        start, item = 0, None
        while item is None:  # the fragments, PUT through the SDK's adapter to the pre-authenticated URL
            chunk = content[start:start + 3 * unit]
            info = RequestInformation(method=Method.PUT)
            info.url = session.upload_url
            info.headers.try_add("Content-Range", f"bytes {start}-{start + len(chunk) - 1}/{len(content)}")
            info.headers.try_add("Content-Length", str(len(chunk)))
            info.set_stream_content(chunk)
            if start + len(chunk) < len(content):
                answer = await graph.request_adapter.send_async(info, UploadSession,
                                                                 {})
                assert answer is not None and answer.next_expected_ranges
                progress.append(answer)
                start = int(answer.next_expected_ranges[0].partition("-")[0])
            else:
                item = await graph.request_adapter.send_async(info, DriveItem, {})
        assert item is not None and item.id is not None
        downloaded = await items.by_drive_item_id(item.id).content.get()
        return session, progress, item, downloaded or b""

    session, progress, item, downloaded = sdk.run(calls)
    assert session.next_expected_ranges == ["0-"] and httpx.URL(str(session.upload_url)).host == "localhost"
    assert [p.next_expected_ranges for p in progress] == [[f"{3 * unit}-"], [f"{6 * unit}-"]]
    assert item.name == "drawings.zip" and item.size == len(content) and downloaded == content
    assert sdk.state()["transfers"] == {"uploadSessions": {}, "preauthRefusedTokens": 0}


def test_the_sdk_reads_a_list_item_with_and_without_its_fields(sdk: Sdk) -> None:
    values = {"ClientId": "ACME", "ClientName": "ACME Corp"}

    async def calls(graph: GraphServiceClient) -> tuple[Any, ...]:
        items = graph.drives.by_drive_id(DRIVE).items
        acme = await items.by_drive_item_id("root").children.post(folder("ACME"))
        assert acme is not None and acme.id is not None
        # The SDK has no request builder for a drive item's fields: a user sets them as the hub does.
        httpx.patch(f"{sdk.url}/v1.0/drives/{DRIVE}/items/{acme.id}/listItem/fields", json=values,
                    headers={"Authorization": f"Bearer {TOKEN}"}).raise_for_status()
        item = items.by_drive_item_id(acme.id)
        plain = await item.list_item.get()
        expanded = await item.list_item.get(RequestConfiguration(
            query_parameters=ListItemRequestBuilder.ListItemRequestBuilderGetQueryParameters(expand=["fields"])))
        return plain, expanded

    plain, expanded = sdk.run(calls)
    assert plain.id and plain.fields is None and plain.content_type.name == "Folder"
    assert expanded.id == plain.id and expanded.fields is not None
    assert {k: expanded.fields.additional_data[k] for k in values} == values


def test_the_sdk_reads_delta_in_every_form(sdk: Sdk) -> None:
    async def calls(graph: GraphServiceClient) -> dict[str, Any]:
        items = graph.drives.by_drive_id(DRIVE).items
        root = items.by_drive_item_id("root")
        created = [await root.children.post(folder(name)) for name in ("A", "B", "C")]
        first = await root.delta.get()  # page_size 2: a nextLink
        assert first is not None and first.odata_next_link and not first.odata_delta_link
        second = await root.delta.with_url(first.odata_next_link).get()
        assert second is not None and second.odata_delta_link
        latest = await root.delta_with_token("latest").get()
        assert latest is not None and latest.odata_delta_link
        d = await root.children.post(folder("D"))
        since_first = await root.delta.with_url(second.odata_delta_link).get()
        since_latest = await root.delta.with_url(latest.odata_delta_link).get()
        token = httpx.URL(str(second.odata_delta_link)).params["token"]
        function_form = await root.delta_with_token(token).get()
        top = await root.delta.get(RequestConfiguration(
            query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(top=1)))
        with pytest.raises(ODataError) as expired:
            await root.delta_with_token("not-a-token").get()
        return {"created": [c.id for c in [*created, d] if c], "first": first, "second": second, "latest": latest,
                "since_first": since_first, "since_latest": since_latest, "function_form": function_form,
                "top": top, "expired": expired.value}

    got = sdk.run(calls)
    a, b, c, d = got["created"]
    assert [i.id for i in [*got["first"].value, *got["second"].value]] == [a, b, c]
    assert got["latest"].value == []
    for answer in ("since_first", "since_latest", "function_form"):
        assert [i.id for i in got[answer].value] == [d], answer
    assert [i.id for i in got["top"].value] == [a] and got["top"].odata_next_link
    assert got["expired"].response_status_code == 410 and got["expired"].error.code == "resyncRequired"


def test_a_404_reaches_the_sdk_as_graphs_error_body(sdk: Sdk) -> None:
    async def calls(graph: GraphServiceClient) -> ODataError:
        with pytest.raises(ODataError) as missing:
            await graph.drives.by_drive_id(DRIVE).items.by_drive_item_id("01NOSUCHITEM").get()
        return missing.value

    error = sdk.run(calls)
    assert error.response_status_code == 404
    assert error.error.code == "itemNotFound" and error.error.message
    inner = error.error.inner_error
    assert inner is not None and inner.request_id and inner.client_request_id and inner.date is not None


def test_the_sdk_deletes_an_item_and_a_second_delete_gets_404(sdk: Sdk) -> None:
    async def calls(graph: GraphServiceClient) -> tuple[Any, ...]:
        root = graph.drives.by_drive_id(DRIVE).items.by_drive_item_id("root")
        draft = await root.children.post(folder("Drafts"))
        assert draft is not None and draft.id is not None
        item = graph.drives.by_drive_id(DRIVE).items.by_drive_item_id(draft.id)
        deleted = await item.delete()
        with pytest.raises(ODataError) as again:
            await item.delete()
        with pytest.raises(ODataError) as gone:
            await item.get()
        return deleted, again.value, gone.value

    deleted, again, gone = sdk.run(calls)
    assert deleted is None  # 204 No Content
    assert (again.response_status_code, again.error.code) == (404, "itemNotFound")
    assert (gone.response_status_code, gone.error.code) == (404, "itemNotFound")


def test_the_sdk_creates_reads_renews_and_deletes_a_subscription(sdk: Sdk) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)

    async def calls(graph: GraphServiceClient) -> dict[str, Any]:
        created = await graph.subscriptions.post(Subscription(
            change_type="updated", notification_url=sdk.endpoint, resource=f"drives/{DRIVE}/root",
            expiration_date_time=expires, client_state="sdk-state"))
        assert created is not None and created.id is not None
        one = graph.subscriptions.by_subscription_id(created.id)
        read = await one.get()
        await graph.drives.by_drive_id(DRIVE).items.by_drive_item_id("root").children.post(folder("Notified"))
        renewed = await one.patch(Subscription(expiration_date_time=expires + timedelta(hours=1)))
        listed = await graph.subscriptions.get()
        with pytest.raises(ODataError) as below:
            await graph.subscriptions.post(Subscription(
                change_type="updated", notification_url=sdk.endpoint, resource=f"drives/{DRIVE}/items/x",
                expiration_date_time=expires, client_state="sdk-state"))
        await one.delete()
        with pytest.raises(ODataError) as gone:
            await one.get()
        return {"created": created, "read": read, "renewed": renewed, "listed": listed, "below": below.value,
                "gone": gone.value}

    got = sdk.run(calls)
    created = got["created"]
    assert created.resource == f"drives/{DRIVE}/root" and created.client_state == "sdk-state"
    assert created.notification_url == sdk.endpoint and created.change_type == "updated"
    assert got["read"].id == created.id and got["read"].expiration_date_time == created.expiration_date_time
    assert got["renewed"].expiration_date_time - created.expiration_date_time == timedelta(hours=1)
    assert [s.id for s in got["listed"].value] == [created.id]
    assert got["below"].response_status_code == 400 and got["below"].error.code == "InvalidRequest"
    assert got["gone"].response_status_code == 404
    assert wait_until(lambda: bool(sdk.receiver.bodies), timeout=10)
    [notification] = parse_notifications(sdk.receiver.bodies[0])
    assert notification.subscription_id == created.id and notification.resource_id is None
