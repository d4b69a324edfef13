"""The SharePoint simulator's site, library, group, permission, column and label routes, driven through
Microsoft's own Python SDK (``msgraph-sdk``), unchanged but for its base URL and a static bearer token: what
the SDK sends and reads is what Graph sends and answers, so the simulator and the hub's client speak it."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest

# The SDK's generated modules, imported here and lazily by its request builders, warn that classes the SDK
# itself defines and subclasses are deprecated: a notice to the SDK's generator, not to its users.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator
    from kiota_abstractions.authentication.base_bearer_token_authentication_provider import (
        BaseBearerTokenAuthenticationProvider,
    )
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.drives.item.items.item.invite.invite_post_request_body import InvitePostRequestBody
    from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
    from msgraph.generated.models.column_definition import ColumnDefinition
    from msgraph.generated.models.drive_item import DriveItem
    from msgraph.generated.models.drive_recipient import DriveRecipient
    from msgraph.generated.models.field_value_set import FieldValueSet
    from msgraph.generated.models.folder import Folder
    from msgraph.generated.models.item_retention_label import ItemRetentionLabel
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.text_column import TextColumn
    from msgraph.generated.sites.item.lists.item.items.item.fields.fields_request_builder import FieldsRequestBuilder
    from msgraph_core import GraphClientFactory

from hub.ingress.server import serve_in_thread
from simulators.sharepoint import SimulatorConfig, create_app

# msgraph-core's middleware transport leaves a closed client's connection for the garbage collector (one
# GET through GraphClientFactory.create_with_default_middleware does it; the same GET on plain httpx does
# not): the SDK's socket, not the simulator's nor the hub's.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

TOKEN = "sdk-sites-token"
HOST = "contoso.sharepoint.example"


class StaticToken(AccessTokenProvider):
    """The simulator's token, whatever the request (the SDK's own provider interface)."""

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any] | None = None
                                      ) -> str:
        return TOKEN

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator(["127.0.0.1"])


Scenario = Callable[[GraphServiceClient], Awaitable[None]]


def run(base_url: str, scenario: Scenario) -> None:
    """Run ``scenario`` with the SDK's client on the simulator at ``base_url``, in one event loop: Graph's
    HTTP client with its default middleware, a kiota bearer-token provider and Graph's request adapter."""
    async def main() -> None:
        async with GraphClientFactory.create_with_default_middleware() as http:
            adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken()), client=http)
            adapter.base_url = f"{base_url}/v1.0"
            await scenario(GraphServiceClient(request_adapter=adapter))
    asyncio.run(main())
    gc.collect()  # the SDK's left-over socket (see pytestmark) is reported now, inside the test, not at exit


@pytest.fixture
def sim() -> Iterator[str]:
    """A tenant as strict as SharePoint: site Engagements on ``HOST``, library Workspaces (a ``b!`` drive id),
    the site's own groups, SharePoint's columns only, two published labels."""
    config = SimulatorConfig(token=TOKEN, web_host=f"https://{HOST}", site="Engagements", drives=("Workspaces",),
                             retention_labels=frozenset({"EU-Engagement-7y", "O'Brien Matter 25y"}),
                             groups=("Strategy-EU", "Finance", "O'Brien & Partners"))
    with serve_in_thread(create_app(config)) as url:
        yield url


async def site_and_drive(client: GraphServiceClient) -> tuple[str, str]:
    """The site's id (found by host name and path) and the Workspaces library's drive id (found by name)."""
    site = await client.sites.by_site_id(f"{HOST}:/sites/Engagements:").get()
    assert site is not None and site.id is not None
    drives = await client.sites.by_site_id(site.id).drives.get()
    assert drives is not None and drives.value is not None
    [drive] = [d for d in drives.value if d.name == "Workspaces"]
    assert drive.id is not None
    return site.id, drive.id


async def folder(client: GraphServiceClient, drive_id: str, name: str) -> str:
    """A new folder at the drive's root; its id."""
    created = await (client.drives.by_drive_id(drive_id).items.by_drive_item_id("root").children.post(
        DriveItem(name=name, folder=Folder())))
    assert created is not None and created.id is not None
    return created.id


async def group_id(client: GraphServiceClient, name: str) -> str:
    """A directory group's object id, by display name (a quote in the name doubled, as OData writes it)."""
    literal = name.replace("'", "''")
    config = RequestConfiguration(query_parameters=GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
        filter=f"displayName eq '{literal}'", select=["id", "displayName"]))
    found = await client.groups.get(request_configuration=config)
    assert found is not None and found.value is not None and len(found.value) == 1
    assert found.value[0].display_name == name and found.value[0].id is not None
    return found.value[0].id


async def odata_error(coroutine: Coroutine[Any, Any, Any]) -> ODataError:
    """The Graph error a call raised (it must raise one)."""
    with pytest.raises(ODataError) as caught:
        await coroutine
    return caught.value


def test_the_site_is_found_by_host_and_path_and_its_library_by_name_with_a_graph_drive_id(sim: str) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        site_id, drive_id = await site_and_drive(client)
        assert site_id.startswith(f"{HOST},") and len(site_id.split(",")) == 3
        assert drive_id.startswith("b!") and len(drive_id) > 40
        same = await client.sites.by_site_id(site_id).get()
        assert same is not None and same.web_url == f"https://{HOST}/sites/Engagements"
        drive = await client.drives.by_drive_id(drive_id).get()
        assert drive is not None and drive.name == "Workspaces"
        assert drive.web_url == f"https://{HOST}/sites/Engagements/Workspaces"
        missing = await odata_error(client.sites.by_site_id(f"{HOST}:/sites/Elsewhere:").get())
        assert missing.response_status_code == 404
        assert missing.error is not None and missing.error.code == "itemNotFound"

    run(sim, scenario)


def test_groups_are_found_by_display_name_with_quotes_escaped_and_unsupported_filters_are_refused(sim: str) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        obrien = await group_id(client, "O'Brien & Partners")
        assert obrien != await group_id(client, "Finance")
        by_id = await client.groups.by_group_id(obrien).get()
        assert by_id is not None and by_id.display_name == "O'Brien & Partners" and by_id.security_enabled
        config = RequestConfiguration(query_parameters=GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            filter="displayName eq 'finance'"))
        found = await client.groups.get(request_configuration=config)
        assert found is not None and [g.display_name for g in found.value or []] == ["Finance"]  # case-insensitive
        for clause, code in (("securityIdentifier eq 'S-1'", "Request_UnsupportedQuery"),
                             ("displayName eq 'O'Brien & Partners'", "BadRequest")):
            config = RequestConfiguration(query_parameters=GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
                filter=clause))
            refused = await odata_error(client.groups.get(request_configuration=config))
            assert refused.response_status_code == 400 and refused.error is not None and refused.error.code == code

    run(sim, scenario)


def test_a_new_folder_inherits_the_sites_groups_and_an_invite_by_object_id_makes_them_direct(sim: str) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        _, drive_id = await site_and_drive(client)
        item = client.drives.by_drive_id(drive_id).items.by_drive_item_id(await folder(client, drive_id, "ACME"))
        inherited = await item.permissions.get()
        assert inherited is not None and inherited.value is not None
        assert {(p.granted_to_v2.site_group.display_name, tuple(p.roles or ())) for p in inherited.value
                if p.granted_to_v2 and p.granted_to_v2.site_group} == {
            ("Engagements Owners", ("owner",)), ("Engagements Members", ("write",)),
            ("Engagements Visitors", ("read",))}
        assert all(p.inherited_from is not None and p.inherited_from.drive_id == drive_id for p in inherited.value)
        refused = await odata_error(item.permissions.by_permission_id(inherited.value[0].id or "").delete())
        assert refused.response_status_code == 400  # only permissions that are not inherited can be deleted

        strategy = await group_id(client, "Strategy-EU")
        granted = await (item.invite.post(InvitePostRequestBody(
            recipients=[DriveRecipient(object_id=strategy)], roles=["write"], require_sign_in=True,
            send_invitation=False)))
        assert granted is not None and granted.value is not None
        [permission] = granted.value
        assert permission.granted_to_v2 is not None and permission.granted_to_v2.group is not None
        assert permission.granted_to_v2.group.id == strategy and permission.roles == ["write"]
        direct = await item.permissions.get()
        assert direct is not None and direct.value is not None and len(direct.value) == 4
        assert all(p.inherited_from is None for p in direct.value)  # inheritance broken: copies, then the invite
        owners = next(p for p in direct.value if p.granted_to_v2 and p.granted_to_v2.site_group
                      and p.granted_to_v2.site_group.display_name == "Engagements Owners")
        assert owners.id not in {p.id for p in inherited.value}  # a copy has an id of its own
        await item.permissions.by_permission_id(permission.id or "").delete()
        left = await item.permissions.get()
        assert left is not None and len(left.value or []) == 3

    run(sim, scenario)


def test_fields_need_a_column_of_the_library_which_can_be_listed_and_created(sim: str) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        site_id, drive_id = await site_and_drive(client)
        item_id = await folder(client, drive_id, "ENG-1")
        # The SDK builds no fields request below a driveItem's listItem; its fields builder takes the raw URL.
        fields_of = FieldsRequestBuilder(client.request_adapter, f"{client.request_adapter.base_url}/drives/"
                                         f"{drive_id}/items/{item_id}/listItem/fields")
        values = FieldValueSet(additional_data={"ProjectCode": "ENG-1"})
        refused = await odata_error(fields_of.patch(values))
        assert refused.response_status_code == 400 and refused.error is not None
        assert refused.error.code == "invalidRequest"
        assert refused.error.message == "Field 'ProjectCode' is not recognized"

        library = await client.drives.by_drive_id(drive_id).list_.get()
        assert library is not None and library.id is not None
        columns = client.sites.by_site_id(site_id).lists.by_list_id(library.id).columns
        before = await columns.get()
        assert before is not None and "Title" in {c.name for c in before.value or []}
        created = await columns.post(ColumnDefinition(name="ProjectCode", display_name="Project code",
                                                      text=TextColumn()))
        assert created is not None and created.name == "ProjectCode" and created.text is not None
        duplicate = await odata_error(columns.post(ColumnDefinition(name="projectcode", text=TextColumn())))
        assert duplicate.response_status_code == 400
        after = await columns.get()
        assert after is not None and [c.name for c in after.value or []].count("ProjectCode") == 1

        fields = await fields_of.patch(values)
        assert fields is not None and fields.additional_data["ProjectCode"] == "ENG-1"
        again = await fields_of.get()
        assert again is not None and again.additional_data["ProjectCode"] == "ENG-1"

    run(sim, scenario)


def test_only_a_published_retention_label_applies_and_the_published_ones_can_be_listed(sim: str) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        _, drive_id = await site_and_drive(client)
        labels = await client.security.labels.retention_labels.get()
        assert labels is not None and sorted(lbl.display_name or "" for lbl in labels.value or []) == [
            "EU-Engagement-7y", "O'Brien Matter 25y"]
        item = client.drives.by_drive_id(drive_id).items.by_drive_item_id(await folder(client, drive_id, "Labelled"))
        refused = await odata_error(item.retention_label.patch(ItemRetentionLabel(name="NA-Engagement-7y")))
        assert refused.response_status_code == 400
        assert refused.error is not None and refused.error.code == "invalidRequest"
        applied = await item.retention_label.patch(ItemRetentionLabel(name="EU-Engagement-7y"))
        assert applied is not None and applied.name == "EU-Engagement-7y"

    run(sim, scenario)


def test_a_tenant_whose_labels_the_app_cannot_read_answers_403_to_the_label_list() -> None:
    config = SimulatorConfig(token=TOKEN)  # no published list given: any label applies, the list is refused
    async def scenario(client: GraphServiceClient) -> None:
        refused = await odata_error(client.security.labels.retention_labels.get())
        assert refused.response_status_code == 403

    with serve_in_thread(create_app(config)) as url:
        run(url, scenario)
