"""The Box simulator driven by Box's own SDK (``boxsdk`` 10.x, the generated ``box_sdk_gen``), unchanged but for
its base URLs: every call the hub's client (:mod:`connectors.box.client`) makes, sent as the SDK sends it and read
as the SDK reads Box's answers, including its Client Credentials sign-in, its refresh on a 401, its wait on a
429's ``Retry-After``, Box's error body in ``BoxAPIError``, its chunked upload and its webhook signature check;
and the trash the tests put a folder in by hand.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Iterator

import pytest
from box_sdk_gen import (
    BaseUrls,
    BoxAPIError,
    BoxCCGAuth,
    BoxClient,
    BoxSDKError,
    CCGConfig,
    CreateCollaborationAccessibleBy,
    CreateCollaborationAccessibleByTypeField,
    CreateCollaborationItem,
    CreateCollaborationItemTypeField,
    CreateCollaborationRole,
    CreateFolderMetadataByIdScope,
    CreateFolderParent,
    CreateMetadataTemplateFields,
    CreateMetadataTemplateFieldsTypeField,
    CreateRetentionPolicyAssignmentAssignTo,
    CreateRetentionPolicyAssignmentAssignToTypeField,
    CreateWebhookTarget,
    CreateWebhookTargetTypeField,
    CreateWebhookTriggers,
    GetEventsStreamType,
    GetFolderMetadataByIdScope,
    GetMetadataTemplateScope,
    GetRetentionPolicyAssignmentsType,
    UpdateCollaborationByIdRole,
    UpdateFolderMetadataByIdRequestBody,
    UpdateFolderMetadataByIdRequestBodyOpField,
    UpdateFolderMetadataByIdScope,
    UpdateMetadataTemplateRequestBody,
    UpdateMetadataTemplateRequestBodyOpField,
    UpdateMetadataTemplateScope,
    UpdateWebhookByIdTriggers,
    UploadFileAttributes,
    UploadFileAttributesParentField,
    UploadFileVersionAttributes,
    WebhooksManager,
)

from tests.support.box import PART_SIZE, BoxSim, running_box


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with running_box() as running:
        yield running


def sdk_client(sim: BoxSim, *, secret: str | None = None) -> BoxClient:
    """The SDK signed in with the app's client credentials for the enterprise, on the simulator's URLs."""
    config = sim.config
    auth = BoxCCGAuth(CCGConfig(client_id=config.client_id, client_secret=secret or config.client_secret,
                                enterprise_id=config.enterprise_id))
    return BoxClient(auth).with_custom_base_urls(BaseUrls(base_url=sim.url, upload_url=f"{sim.url}/api",
                                                          oauth_2_url=f"{sim.url}/oauth2"))


@pytest.fixture
def sdk(sim: BoxSim) -> BoxClient:
    return sdk_client(sim)


def folder(sdk: BoxClient, name: str, parent: str = "0") -> str:
    """A new folder's id."""
    return sdk.folders.create_folder(name, CreateFolderParent(id=parent)).id


def test_the_sdk_signs_in_with_client_credentials_and_a_wrong_secret_gets_boxs_oauth_error(sim: BoxSim) -> None:
    root = sdk_client(sim).folders.get_folder_by_id("0")
    assert (root.id, root.name) == ("0", "All Files")
    with pytest.raises(BoxAPIError) as refused:
        sdk_client(sim, secret="wrong").folders.get_folder_by_id("0")
    assert refused.value.response_info.status_code == 400
    assert refused.value.response_info.body["error"] == "invalid_client"


def test_the_sdk_signs_in_again_when_its_token_is_answered_401(sim: BoxSim, sdk: BoxClient) -> None:
    sdk.folders.get_folder_by_id("0")
    sim.admin.post("/tokens/revoke", params={"client_id": sim.config.client_id})
    assert sdk.folders.get_folder_by_id("0").id == "0"
    assert sim.admin.get("/tokens").json()["issued"] == {sim.config.client_id: 2}


def test_the_sdk_creates_folders_reads_the_409_conflict_and_pages_items(sdk: BoxClient) -> None:
    acme = sdk.folders.create_folder("ACME", CreateFolderParent(id="0"))
    assert acme.id.isdigit() and acme.etag == "0" and acme.item_status.value == "active"
    with pytest.raises(BoxAPIError) as conflict:
        sdk.folders.create_folder("acme", CreateFolderParent(id="0"))
    info = conflict.value.response_info
    assert (info.status_code, info.code) == (409, "item_name_in_use")
    assert info.context_info["conflicts"][0]["id"] == acme.id and info.request_id
    for name in ("Contracts", "SOWs", "Invoices"):
        folder(sdk, name, acme.id)
    first = sdk.folders.get_folder_items(acme.id, usemarker=True, limit=2)
    rest = sdk.folders.get_folder_items(acme.id, usemarker=True, limit=2, marker=first.next_marker)
    assert [e.name for e in first.entries + rest.entries] == ["Contracts", "Invoices", "SOWs"]
    assert rest.next_marker is None
    page = sdk.folders.get_folder_items(acme.id, offset=2, limit=2)
    assert (page.total_count, [e.name for e in page.entries]) == (3, ["SOWs"])
    got = sdk.folders.get_folder_by_id(acme.id)
    assert got.path_collection.entries[0].id == "0" and got.item_collection.total_count == 3
    with pytest.raises(BoxAPIError) as missing:
        sdk.folders.get_folder_by_id("404404")
    assert (missing.value.response_info.status_code, missing.value.response_info.code) == (404, "not_found")


def test_the_sdk_finds_groups_and_adds_changes_lists_and_removes_collaborations(sdk: BoxClient) -> None:
    acme = folder(sdk, "ACME")
    groups = sdk.groups.get_groups(filter_term="Strategy-E")
    assert [g.name for g in groups.entries] == ["Strategy-EU"] and groups.total_count == 1
    collaboration = sdk.user_collaborations.create_collaboration(
        CreateCollaborationItem(type=CreateCollaborationItemTypeField.FOLDER, id=acme),
        CreateCollaborationAccessibleBy(type=CreateCollaborationAccessibleByTypeField.GROUP, id=groups.entries[0].id),
        CreateCollaborationRole.VIEWER, notify=False)
    assert collaboration.role.value == "viewer" and collaboration.accessible_by.id == groups.entries[0].id
    with pytest.raises(BoxAPIError) as twice:
        sdk.user_collaborations.create_collaboration(
            CreateCollaborationItem(type=CreateCollaborationItemTypeField.FOLDER, id=acme),
            CreateCollaborationAccessibleBy(type=CreateCollaborationAccessibleByTypeField.GROUP,
                                            id=groups.entries[0].id),
            CreateCollaborationRole.EDITOR)
    assert twice.value.response_info.code == "user_already_collaborator"
    changed = sdk.user_collaborations.update_collaboration_by_id(collaboration.id,
                                                                  role=UpdateCollaborationByIdRole.EDITOR)
    assert changed.role.value == "editor"
    listed = sdk.list_collaborations.get_folder_collaborations(acme, limit=10)
    assert [c.id for c in listed.entries] == [collaboration.id]
    sdk.user_collaborations.delete_collaboration_by_id(collaboration.id)
    assert sdk.list_collaborations.get_folder_collaborations(acme).entries == []


def test_the_sdk_makes_a_template_adds_a_field_and_creates_and_patches_an_instance(sdk: BoxClient) -> None:
    acme = folder(sdk, "ACME")
    with pytest.raises(BoxAPIError) as absent:
        sdk.metadata_templates.get_metadata_template(GetMetadataTemplateScope.ENTERPRISE, "hubWorkspace")
    assert absent.value.response_info.status_code == 404
    template = sdk.metadata_templates.create_metadata_template(
        "enterprise", "Hub workspace", template_key="hubWorkspace",
        fields=[CreateMetadataTemplateFields(type=CreateMetadataTemplateFieldsTypeField.STRING, key=key,
                                             display_name=key) for key in ("ProjectCode", "Region")])
    assert template.template_key == "hubWorkspace" and template.scope == "enterprise_1164695563"
    sdk.metadata_templates.update_metadata_template(
        UpdateMetadataTemplateScope.ENTERPRISE, "hubWorkspace",
        [UpdateMetadataTemplateRequestBody(op=UpdateMetadataTemplateRequestBodyOpField.ADDFIELD,
                                           data={"type": "string", "key": "Country", "displayName": "Country"})])
    read = sdk.metadata_templates.get_metadata_template(GetMetadataTemplateScope.ENTERPRISE, "hubWorkspace")
    assert [f.key for f in read.fields] == ["ProjectCode", "Region", "Country"]
    created = sdk.folder_metadata.create_folder_metadata_by_id(
        acme, CreateFolderMetadataByIdScope.ENTERPRISE, "hubWorkspace", {"ProjectCode": "P-1", "Region": "EU"})
    assert created.template == "hubWorkspace" and created.parent == f"folder_{acme}"
    with pytest.raises(BoxAPIError) as again:
        sdk.folder_metadata.create_folder_metadata_by_id(
            acme, CreateFolderMetadataByIdScope.ENTERPRISE, "hubWorkspace", {"Region": "EU"})
    assert (again.value.response_info.status_code, again.value.response_info.code) == (409, "tuple_already_exists")
    sdk.folder_metadata.update_folder_metadata_by_id(
        acme, UpdateFolderMetadataByIdScope.ENTERPRISE, "hubWorkspace",
        [UpdateFolderMetadataByIdRequestBody(op=UpdateFolderMetadataByIdRequestBodyOpField.REPLACE, path="/Region",
                                             value="ME"),
         UpdateFolderMetadataByIdRequestBody(op=UpdateFolderMetadataByIdRequestBodyOpField.ADD, path="/Country",
                                             value="AE")])
    read_back = sdk.folder_metadata.get_folder_metadata_by_id(acme, GetFolderMetadataByIdScope.ENTERPRISE,
                                                               "hubWorkspace")
    assert read_back.extra_data == {"ProjectCode": "P-1", "Region": "ME", "Country": "AE"}
    with pytest.raises(BoxAPIError) as unknown_field:
        sdk.folder_metadata.create_folder_metadata_by_id(
            folder(sdk, "Other"), CreateFolderMetadataByIdScope.ENTERPRISE, "hubWorkspace", {"Nope": "x"})
    assert unknown_field.value.response_info.code == "schema_validation_failed"


def test_the_sdk_lists_retention_policies_and_assigns_one_to_a_folder(sdk: BoxClient) -> None:
    acme = folder(sdk, "ACME")
    policies = sdk.retention_policies.get_retention_policies(policy_name="EU-Engagement")
    (policy,) = policies.entries
    assert policy.policy_name == "EU-Engagement-7y" and policy.retention_length == str(7 * 365)
    assignment = sdk.retention_policy_assignments.create_retention_policy_assignment(
        policy.id, CreateRetentionPolicyAssignmentAssignTo(
            type=CreateRetentionPolicyAssignmentAssignToTypeField.FOLDER, id=acme))
    assert assignment.assigned_to.id == acme and assignment.retention_policy.id == policy.id
    listed = sdk.retention_policy_assignments.get_retention_policy_assignments(
        policy.id, type=GetRetentionPolicyAssignmentsType.FOLDER)
    assert [a.id for a in listed.entries] == [assignment.id]


def test_the_sdk_uploads_a_file_and_a_version_reads_it_and_downloads_it(sdk: BoxClient) -> None:
    acme = folder(sdk, "ACME")
    uploaded = sdk.uploads.upload_file(
        UploadFileAttributes(name="SOW.pdf", parent=UploadFileAttributesParentField(id=acme)), io.BytesIO(b"draft"))
    (file,) = uploaded.entries
    assert file.name == "SOW.pdf" and file.size == 5 and file.file_version.sha_1 == file.sha_1
    with pytest.raises(BoxAPIError) as taken:
        sdk.uploads.upload_file(
            UploadFileAttributes(name="sow.PDF", parent=UploadFileAttributesParentField(id=acme)), io.BytesIO(b"x"))
    assert taken.value.response_info.context_info["conflicts"][0]["id"] == file.id
    version = sdk.uploads.upload_file_version(file.id, UploadFileVersionAttributes(name="SOW.pdf"),
                                              io.BytesIO(b"signed")).entries[0]
    assert (version.id, version.etag) == (file.id, "1")
    assert sdk.files.get_file_by_id(file.id).size == 6
    stream = sdk.downloads.download_file(file.id)
    assert stream is not None and stream.read() == b"signed"


def test_the_sdk_uploads_a_big_file_in_parts_through_an_upload_session(sdk: BoxClient) -> None:
    acme = folder(sdk, "ACME")
    content = random.Random(7).randbytes(5 * PART_SIZE + 100)
    file = sdk.chunked_uploads.upload_big_file(io.BytesIO(content), "design.bin", len(content), acme)
    assert file.name == "design.bin" and file.size == len(content)
    stream = sdk.downloads.download_file(file.id)
    assert stream is not None and stream.read() == content
    session = sdk.chunked_uploads.create_file_upload_session_for_existing_file(file.id, len(content))
    assert session.total_parts == 6 and session.part_size == PART_SIZE
    with pytest.raises(BoxAPIError) as small:
        sdk.chunked_uploads.create_file_upload_session(acme, 10, "small.txt")
    assert small.value.response_info.code == "file_size_too_small"


def test_the_sdk_reads_the_event_streams(sdk: BoxClient) -> None:
    head = sdk.events.get_events(stream_type=GetEventsStreamType.CHANGES, stream_position="now")
    assert head.chunk_size == 0
    acme = folder(sdk, "ACME")
    changes = sdk.events.get_events(stream_type=GetEventsStreamType.CHANGES, stream_position=str(
        head.next_stream_position))
    assert [(e.event_type.value, e.source.id) for e in changes.entries] == [("ITEM_CREATE", acme)]
    admin = sdk.events.get_events(stream_type=GetEventsStreamType.ADMIN_LOGS_STREAMING, stream_position="0")
    assert [e.event_type.value for e in admin.entries] == ["UPLOAD"]
    assert isinstance(admin.next_stream_position, str)


def test_the_sdk_puts_a_folder_in_the_trash_and_reads_its_event(sdk: BoxClient) -> None:
    acme = folder(sdk, "ACME")
    folder(sdk, "Matters", acme)
    head = sdk.events.get_events(stream_type=GetEventsStreamType.CHANGES, stream_position="now")
    with pytest.raises(BoxAPIError) as not_empty:
        sdk.folders.delete_folder_by_id(acme)
    assert (not_empty.value.response_info.status_code, not_empty.value.response_info.code) == (400, "folder_not_empty")
    sdk.folders.delete_folder_by_id(acme, recursive=True)
    with pytest.raises(BoxAPIError) as gone:
        sdk.folders.get_folder_by_id(acme)
    assert gone.value.response_info.status_code == 404
    changes = sdk.events.get_events(stream_type=GetEventsStreamType.CHANGES, stream_position=str(
        head.next_stream_position))
    assert [(e.event_type.value, e.source.id) for e in changes.entries] == [("ITEM_TRASH", acme)]


def test_the_sdk_manages_webhooks_and_verifies_the_simulators_signed_deliveries(sim: BoxSim, sdk: BoxClient) -> None:
    acme = folder(sdk, "ACME")
    hook = sdk.webhooks.create_webhook(CreateWebhookTarget(id=acme, type=CreateWebhookTargetTypeField.FOLDER),
                                       sim.receiver_url, [CreateWebhookTriggers.FILE_UPLOADED])
    with pytest.raises(BoxAPIError) as twice:
        sdk.webhooks.create_webhook(CreateWebhookTarget(id=acme, type=CreateWebhookTargetTypeField.FOLDER),
                                    sim.receiver_url, [CreateWebhookTriggers.FILE_UPLOADED])
    assert twice.value.response_info.status_code == 409
    assert [w.id for w in sdk.webhooks.get_webhooks().entries] == [hook.id]
    assert sdk.webhooks.get_webhook_by_id(hook.id).address == sim.receiver_url
    updated = sdk.webhooks.update_webhook_by_id(hook.id, triggers=[UpdateWebhookByIdTriggers.FILE_UPLOADED,
                                                                    UpdateWebhookByIdTriggers.FILE_TRASHED])
    assert [getattr(t, "value", t) for t in updated.triggers or []] == ["FILE.UPLOADED", "FILE.TRASHED"]
    sdk.uploads.upload_file(UploadFileAttributes(name="a.txt", parent=UploadFileAttributesParentField(id=acme)),
                            io.BytesIO(b"a"))
    sim.flush()
    ((body, headers),) = sim.receiver.deliveries
    assert json.loads(body)["webhook"]["id"] == hook.id
    config = sim.config
    assert WebhooksManager.validate_message(body.decode(), headers, config.primary_key,
                                            secondary_key=config.secondary_key)
    assert WebhooksManager.validate_message(body.decode(), headers, "rotated-away",
                                            secondary_key=config.secondary_key)
    assert not WebhooksManager.validate_message(body.decode() + " ", headers, config.primary_key)
    sdk.webhooks.delete_webhook_by_id(hook.id)
    assert sdk.webhooks.get_webhooks().entries == []


def test_the_sdk_waits_the_retry_after_of_a_429_and_then_succeeds(sim: BoxSim, sdk: BoxClient) -> None:
    sdk.folders.get_folder_by_id("0")
    seed = next(s for s in range(1000) if (r := random.Random(s)).random() < 0.5 <= r.random())
    sim.faults(throttle_rate=0.5, retry_after_s=1, seed=seed)  # the first call is throttled, its retry is not
    started = time.monotonic()
    assert sdk.folders.get_folder_by_id("0").id == "0"
    assert time.monotonic() - started >= 1.0
    assert sim.state()["faults"]["injected"] == {"throttle": 1}


def test_the_sdk_sees_boxs_error_body_on_a_malformed_request(sdk: BoxClient) -> None:
    with pytest.raises((BoxAPIError, BoxSDKError)) as refused:
        sdk.folders.create_folder("", CreateFolderParent(id="0"))
    assert isinstance(refused.value, BoxAPIError)
    assert refused.value.response_info.body["type"] == "error" and refused.value.response_info.status_code == 400
