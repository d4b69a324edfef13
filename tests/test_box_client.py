"""The Box client against the Box simulator over real HTTP: sign-in and renewal, folders, collaborations,
metadata, retention, uploads (whole and in parts), downloads, events, webhooks, and Box's errors; and the
simulator's signed webhooks accepted by the hub's own verifier (:mod:`connectors.box.inbound`).

Past 400 lines on purpose: every call the client makes, against the one simulator the tests share."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.box.client import WORKSPACE_TRIGGERS, BoxClient
from connectors.box.errors import (
    BoxNotFound,
    BoxRejected,
    GroupNotFound,
    RetentionConflict,
    RetentionPolicyNotFound,
)
from connectors.box.inbound import to_event, verify
from connectors.box.models import BoxEvent
from connectors.box.platform import BoxPlatform
from connectors.http import RetryPolicy
from connectors.platform import ChangePage, DocumentPlatform, RetentionNotPublished
from connectors.settings import BoxSettings
from hub.errors import AuthenticationFailed, SignInRefused, UpstreamRejected, UpstreamUnavailable
from hub.registry import SchemaRegistry
from tests.support.box import PART_SIZE, BoxSim, running_box


class Sleeps:
    """A ``sleep`` that records instead of waiting, and runs ``then`` once after the first wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.then: Any = None

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.then is not None:
            self.then, then = None, self.then
            then()


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with running_box() as running:
        yield running


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def settings_for(sim: BoxSim, **overrides: Any) -> BoxSettings:
    """Settings pointing at the simulator, with uploads above 2 KiB in parts."""
    options: dict[str, Any] = {"url": sim.url, "upload_url": f"{sim.url}/api", "chunked_upload_threshold": 2048}
    return BoxSettings(**{**options, **overrides})


@pytest.fixture
def box(sim: BoxSim, sleeps: Sleeps) -> Iterator[BoxClient]:
    client = BoxClient.from_settings(settings_for(sim), sleep=sleeps, retry=RetryPolicy(attempts=3, max_wait_s=5.0))
    yield client
    client.close()


def test_the_client_signs_in_with_client_credentials_for_the_enterprise(sim: BoxSim, box: BoxClient) -> None:
    root = box.get_folder("0")
    assert (root.id, root.name, root.etag) == ("0", "All Files", None)
    tokens = sim.admin.get("/tokens").json()
    assert tokens["issued"] == {sim.config.client_id: 1}


def test_a_wrong_secret_is_a_refused_sign_in_naming_the_enterprise_and_never_the_secret(sim: BoxSim) -> None:
    client = BoxClient.from_settings(settings_for(sim, client_secret=SecretStr("not-the-secret")))
    with pytest.raises(SignInRefused) as refused:
        client.get_folder("0")
    client.close()
    assert refused.value.code == "invalid_client"
    assert "1164695563" in str(refused.value) and "not-the-secret" not in str(refused.value)


def test_another_enterprise_is_refused_with_invalid_grant(sim: BoxSim) -> None:
    client = BoxClient.from_settings(settings_for(sim, enterprise_id="99"))
    with pytest.raises(SignInRefused) as refused:
        client.get_folder("0")
    client.close()
    assert refused.value.code == "invalid_grant"


def test_a_token_box_no_longer_takes_is_answered_401_and_the_client_signs_in_again(sim: BoxSim,
                                                                                      box: BoxClient) -> None:
    box.get_folder("0")
    assert sim.admin.post("/tokens/revoke", params={"client_id": sim.config.client_id}).json() == {"revoked": 1}
    assert box.ensure_folder("ACME").name == "ACME"  # 401, a new sign-in, the same call again
    assert sim.admin.get("/tokens").json()["issued"] == {sim.config.client_id: 2}


def test_ensure_folder_makes_each_missing_segment_and_a_repeat_reads_the_409_conflicts(sim: BoxSim,
                                                                                       box: BoxClient) -> None:
    contracts = box.ensure_folder("ACME/Contracts")
    again = box.ensure_folder("ACME/Contracts")
    assert again.id == contracts.id and contracts.id.isdigit()
    acme = box.create_folder("0", "acme")  # Box compares names case-insensitively
    assert acme.name == "ACME" and acme.etag == "0" and acme.sequence_id == "0"
    assert list(sim.state()["items"]) == ["ACME", "ACME/Contracts"]
    assert box.get_folder(contracts.id).parent is not None


def test_a_folder_name_taken_by_a_file_is_a_permanent_error(box: BoxClient) -> None:
    acme = box.ensure_folder("ACME")
    box.upload(acme.id, "Contracts", b"not a folder")
    with pytest.raises(UpstreamRejected, match="exists but is not a folder"):
        box.ensure_folder("ACME/Contracts")


def test_items_are_read_by_marker_and_by_offset_across_pages(box: BoxClient) -> None:
    acme = box.ensure_folder("ACME")
    for name in ("SOWs", "Contracts", "Invoices", "Deliverables", "Correspondence"):
        box.create_folder(acme.id, name)
    box.upload(acme.id, "readme.txt", b"hello")
    expected = ["Contracts", "Correspondence", "Deliverables", "Invoices", "SOWs", "readme.txt"]
    assert [i.name for i in box.items(acme.id, page_size=2)] == expected
    assert [i.name for i in box.items(acme.id, page_size=2, by_marker=False)] == expected
    assert [i.type for i in box.items(acme.id)][-1] == "file"


def test_groups_are_granted_once_with_the_role_changed_in_place_and_revoked(sim: BoxSim, box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    first = box.ensure_collaboration(folder.id, "Strategy-EU", "viewer")
    assert box.ensure_collaboration(folder.id, "strategy-eu", "viewer").id == first.id
    changed = box.ensure_collaboration(folder.id, "Strategy-EU", "editor")
    assert (changed.id, changed.role) == (first.id, "editor")
    box.grant(folder.id, "Finance-EU", "read")
    roles = {c.accessible_by.name: c.role for c in box.collaborations(folder.id) if c.accessible_by}
    assert roles == {"Strategy-EU": "editor", "Finance-EU": "viewer"}
    assert box.revoke(folder.id, "Strategy-EU") == 1
    assert box.revoke(folder.id, "Strategy-EU") == 0
    assert [c["accessible_by"]["name"] for c in sim.state()["collaborations"]] == ["Finance-EU"]


def test_a_group_the_enterprise_lacks_cannot_be_granted(box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    with pytest.raises(GroupNotFound, match="Nobody-EU"):
        box.grant(folder.id, "Nobody-EU", "write")
    with pytest.raises(GroupNotFound):
        box.find_group("Strategy")  # a prefix of several names is not a name


def test_a_collaboration_added_twice_is_read_back_instead_of_failing(box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    group = box.find_group("QA-ME")
    box.add_collaboration(folder.id, group.id, "viewer")  # as if an earlier attempt's answer was lost
    kept = box.ensure_collaboration(folder.id, "QA-ME", "viewer")
    assert [c.id for c in box.collaborations(folder.id)] == [kept.id]


def test_a_collaboration_whose_answer_was_lost_is_read_back_after_boxs_user_already_collaborator(
        sim: BoxSim, sleeps: Sleeps) -> None:
    box = BoxClient.from_settings(settings_for(sim), client=httpx.Client(timeout=httpx.Timeout(0.5)), sleep=sleeps)
    try:
        folder = box.ensure_folder("ACME")
        box.find_group("QA-ME")
        # The draws of the four calls to come: the listing passes; the POST commits but its answer is held until
        # the client gives up (a "ghost"); the POST's retry passes and is answered user_already_collaborator; the
        # listing that reads it back passes.
        wanted = [False, True, False, False]
        seed = next(s for s in range(10_000) if [x < 0.5 for x in _draws(s, 4)] == wanted)
        sim.faults(ghost_rate=0.5, ghost_hold_s=5.0, seed=seed)
        kept = box.ensure_collaboration(folder.id, "QA-ME", "viewer")
        assert sim.state()["faults"]["injected"] == {"ghost": 1}
        sim.faults()
        assert [c.id for c in box.collaborations(folder.id)] == [kept.id] and kept.role == "viewer"
        assert len(sim.state()["collaborations"]) == 1 and len(sleeps.calls) == 1
    finally:
        box.close()


def _draws(seed: int, count: int) -> list[float]:
    """The first ``count`` numbers the simulator's fault plan draws with ``seed``."""
    generator = random.Random(seed)
    return [generator.random() for _ in range(count)]


def test_metadata_makes_the_template_and_the_instance_then_patches_only_what_differs(sim: BoxSim,
                                                                                      box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    created = box.set_metadata(folder.id, {"ProjectCode": "ENG-ACME-0001", "Region": "EU"})
    assert created["ProjectCode"] == "ENG-ACME-0001" and created["$template"] == "hubWorkspace"
    assert created["$parent"] == f"folder_{folder.id}"
    template = box.get_template()
    assert template is not None and template.keys == {"ProjectCode", "Region"}
    same = box.ensure_metadata(folder.id, {"Region": "EU"})
    assert same["$version"] == created["$version"]  # nothing sent
    changed = box.ensure_metadata(folder.id, {"Region": "ME", "Country": "AE"})  # a new field joins the template
    assert (changed["Region"], changed["Country"], changed["ProjectCode"]) == ("ME", "AE", "ENG-ACME-0001")
    assert changed["$version"] == created["$version"] + 1
    template = box.get_template()
    assert template is not None and "Country" in template.keys


def test_retention_is_assigned_once_and_refusals_are_named(box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    first = box.ensure_retention(folder.id, "EU-Engagement-7y")
    box.apply_retention(folder.id, "EU-Engagement-7y")
    assert [a.id for a in box.retention_assignments(first.retention_policy.id)] == [first.id]  # type: ignore[union-attr]
    with pytest.raises(RetentionPolicyNotFound):
        box.apply_retention(folder.id, "EU-Forever")
    box.apply_retention(folder.id, "EU-Contract-10y")  # longer: Box takes it
    with pytest.raises(RetentionConflict):
        box.apply_retention(folder.id, "EU-Service-6y")  # shorter than one already assigned


def test_a_small_file_is_uploaded_whole_and_a_second_upload_is_a_new_version(sim: BoxSim, box: BoxClient) -> None:
    folder = box.ensure_folder("ACME/SOWs")
    first = box.upload(folder.id, "SOW.pdf", b"draft")
    second = box.upload(folder.id, "SOW.pdf", b"signed")
    assert second.id == first.id and (first.etag, second.etag) == ("0", "1")
    assert box.download(first.id) == b"signed"
    assert box.get_file(first.id).size == len(b"signed")


def test_a_large_file_goes_up_in_parts_and_comes_down_whole(sim: BoxSim, box: BoxClient) -> None:
    folder = box.ensure_folder("ACME/Deliverables")
    content = bytes(range(256)) * 20 + b"tail"  # 5124 bytes: five full parts and a short one
    uploaded = box.upload(folder.id, "design.bin", content)
    assert uploaded.size == len(content) and box.download(uploaded.id) == content
    replaced = box.upload(folder.id, "design.bin", content[::-1])  # a new version, through a session too
    assert replaced.id == uploaded.id and box.download(uploaded.id) == content[::-1]
    assert sim.state()["upload_sessions"] == 0 and len(content) > 5 * PART_SIZE


def test_a_download_answered_202_is_asked_again_after_its_retry_after(sleeps: Sleeps) -> None:
    with running_box(downloads_not_ready=2) as sim:
        box = BoxClient.from_settings(settings_for(sim), sleep=sleeps)
        folder = box.ensure_folder("ACME")
        stored = box.upload(folder.id, "fresh.txt", b"just uploaded")
        assert box.download(stored.id) == b"just uploaded"
        box.close()
    assert sleeps.calls == [1.0, 1.0]


def test_a_throttled_call_waits_the_retry_after_box_asks_for(sim: BoxSim, box: BoxClient, sleeps: Sleeps) -> None:
    box.get_folder("0")  # signed in before the throttling starts
    sim.faults(throttle_rate=1.0, retry_after_s=3)
    sleeps.then = sim.faults  # the throttling ends while the client waits
    assert box.ensure_folder("ACME").name == "ACME"
    assert sleeps.calls == [3.0]


def test_server_errors_are_retryable_and_4xx_carry_boxs_code_and_request_id(sim: BoxSim, box: BoxClient) -> None:
    with pytest.raises(BoxNotFound) as missing:
        box.get_folder("12345")
    assert missing.value.code == "not_found" and missing.value.request_id
    assert f"request id {missing.value.request_id}" in str(missing.value)
    with pytest.raises(BoxRejected) as bad:
        box.api.send("POST", "folders", json={"name": "x"})
    assert bad.value.status == 400 and bad.value.code == "bad_request"
    sim.faults(error_rate=1.0)
    with pytest.raises(UpstreamUnavailable, match="500"):
        box.get_folder("0")


def test_the_event_stream_reads_the_changes_since_a_cursor(box: BoxClient) -> None:
    head = box.events("now").next_stream_position
    folder = box.ensure_folder("ACME")
    box.upload(folder.id, "a.txt", b"a")
    page: ChangePage = box.changes(head)
    assert [(c.kind, c.name, c.change) for c in page.items] == [("folder", "ACME", "ITEM_CREATE"),
                                                               ("file", "a.txt", "ITEM_UPLOAD")]
    assert box.changes(page.cursor).items == []
    admin, _ = box.read_events(head, stream_type="admin_logs_streaming")
    assert [e.event_type for e in admin] == ["UPLOAD", "UPLOAD"]


def test_a_change_says_where_its_item_is_and_a_trashed_one_the_folder_it_was_in(box: BoxClient) -> None:
    acme = box.ensure_folder("ACME")
    matters = box.ensure_folder("ACME/Matters")
    head = box.events("now").next_stream_position
    file = box.upload(matters.id, "a.txt", b"a")
    above = (("0", "All Files"), (acme.id, "ACME"), (matters.id, "Matters"))
    assert box.path_of(file.id, "file") == (*above, (file.id, "a.txt")) and box.path_of(matters.id) == above
    box.api.send("DELETE", f"folders/{matters.id}", params={"recursive": "true"})
    uploaded, trashed = box.changes(head).items
    assert (uploaded.id, uploaded.parents, uploaded.parent_id) == (file.id, above, matters.id)
    assert (trashed.id, trashed.deleted, trashed.parents, trashed.parent_id) == (matters.id, True, None, acme.id)
    assert box.path_of(matters.id) is None and box.path_of(file.id, "file") is None and box.path_of("404") is None


def test_an_event_names_its_folder_whatever_the_shape_of_its_source() -> None:
    shapes = [{"type": "folder", "id": "11", "name": "A"},  # the user streams: the folder itself
              {"item_type": "folder", "item_id": "11", "item_name": "A"},  # the enterprise stream
              {"folder_id": "11", "folder_name": "A", "group_id": "7", "parent": {"type": "folder", "id": "0"}}]
    for source in shapes:
        item = BoxEvent(event_id="1", event_type="COLLABORATION_INVITE", source=source).item
        assert item is not None and (item.type, item.id, item.name) == ("folder", "11", "A")
    assert BoxEvent(event_id="1", event_type="GROUP_ADD_USER", source={"type": "group", "id": "7"}).item is None


def test_webhooks_are_created_once_listed_and_deleted(sim: BoxSim, box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    hook_id = box.subscribe(folder.id, sim.receiver_url)
    assert box.subscribe(folder.id, sim.receiver_url) == hook_id  # 409: the one that exists
    hook = box.get_webhook(hook_id)
    assert hook.address == sim.receiver_url and hook.triggers == WORKSPACE_TRIGGERS
    assert [w.id for w in box.webhooks()] == [hook_id]
    box.unsubscribe(hook_id)
    box.unsubscribe(hook_id)
    assert box.webhooks() == []


def test_a_webhook_an_earlier_hub_made_with_fewer_triggers_is_given_the_ones_it_lacks(
        sim: BoxSim, box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    older = box.create_webhook(folder.id, sim.receiver_url, ["FILE.UPLOADED", "FOLDER.CREATED"])
    assert box.subscribe(folder.id, sim.receiver_url) == older.id  # the same webhook, not a second one
    assert box.get_webhook(older.id).triggers == ("FILE.UPLOADED", "FOLDER.CREATED", *(
        t for t in WORKSPACE_TRIGGERS if t != "FILE.UPLOADED"))
    assert [w.id for w in box.webhooks()] == [older.id]


def test_the_simulators_webhooks_pass_the_hubs_box_verifier_with_either_key(sim: BoxSim, box: BoxClient) -> None:
    folder = box.ensure_folder("ACME")
    box.subscribe(folder.id, sim.receiver_url)
    sub = box.ensure_folder("ACME/SOWs")
    box.upload(sub.id, "SOW.pdf", b"signed")
    sim.flush()
    assert len(sim.receiver.deliveries) == 1
    body, headers = sim.receiver.deliveries[0]
    payload = json.loads(body)
    assert (payload["trigger"], payload["source"]["name"], payload["type"]) == ("FILE.UPLOADED", "SOW.pdf",
                                                                              "webhook_event")
    now = datetime.now(UTC)
    config = sim.config
    verify(body, headers, primary_key=config.primary_key, secondary_key=config.secondary_key, now=now)
    verify(body, headers, primary_key="a-rotated-key", secondary_key=config.secondary_key, now=now)
    verify(body, headers, primary_key=config.primary_key, secondary_key=None, now=now)
    with pytest.raises(AuthenticationFailed):
        verify(body + b" ", headers, primary_key=config.primary_key, secondary_key=None, now=now)
    with pytest.raises(AuthenticationFailed):
        verify(body, headers, primary_key=config.primary_key, secondary_key=None, now=now + timedelta(minutes=11))
    assert headers["box-signature-version"] == "1" and headers["box-delivery-id"]
    event = to_event(payload, registry=SchemaRegistry.load(), source="box://enterprise/1164695563")
    assert (event.get_type(), event.get_subject(), event.get_id()) == ("dms.change.notified.v1",
                                                                        payload["source"]["id"], payload["id"])


def test_a_refused_webhook_is_retried_with_a_new_delivery_id_and_the_same_body(sim: BoxSim, box: BoxClient) -> None:
    sim.receiver.fail_first = 1
    folder = box.ensure_folder("ACME")
    box.subscribe(folder.id, sim.receiver_url)
    box.set_metadata(folder.id, {"ProjectCode": "P-1"})
    sim.flush()
    (delivery,) = sim.admin.get("/deliveries").json()["items"]
    assert (delivery["state"], delivery["statuses"]) == ("delivered", [503, 200])
    body, headers = sim.receiver.deliveries[0]
    assert json.loads(body)["trigger"] == "METADATA_INSTANCE.CREATED"
    verify(body, headers, primary_key=sim.config.primary_key, secondary_key=None, now=datetime.now(UTC))


def test_the_box_client_is_the_hubs_document_platform(box: BoxClient) -> None:
    platform: DocumentPlatform = BoxPlatform(box)
    folder = platform.ensure_folder("GLOBEX/Matters")
    platform.grant(folder.id, "Litigation-NA", "write")
    platform.apply_retention(folder.id, "Client-GLOBEX-Matter-25y")
    platform.set_metadata(folder.id, {"ClientId": "GLOBEX"})
    stored = platform.upload(folder.id, "letter.pdf", b"%PDF")
    assert platform.download(stored.id) == b"%PDF"
    assert [c.name for c in platform.changes(None).items][-1] == "letter.pdf"
    with pytest.raises(ValueError):
        platform.grant(folder.id, "Litigation-NA", "owner")  # type: ignore[arg-type]


def test_a_file_deleted_through_the_platform_goes_to_the_trash_and_the_changes_say_so(box: BoxClient) -> None:
    platform = BoxPlatform(box)
    folder = platform.ensure_folder("ACME/SOWs")
    draft = platform.upload(folder.id, "SOW.docx", b"draft")
    head = box.events("now").next_stream_position
    platform.delete(draft.id)
    platform.delete(draft.id)  # already gone: fine
    assert platform.files(folder.id) == [] and platform.document(draft.id) is None
    [trashed] = platform.changes(head).items
    assert (trashed.id, trashed.kind, trashed.change, trashed.deleted) == (draft.id, "file", "ITEM_TRASH", True)


def test_a_file_is_retained_under_its_folders_policy_and_a_folder_without_it_is_refused(box: BoxClient) -> None:
    platform = BoxPlatform(box)
    kept, bare = platform.ensure_folder("ACME/SOWs"), platform.ensure_folder("ACME/Notes")
    platform.apply_retention(kept.id, "EU-Contract-10y")
    assignments = len(box.retention_assignments(box.find_retention_policy("EU-Contract-10y").id))
    platform.apply_retention(platform.upload(kept.id, "SOW.pdf", b"%PDF").id, "EU-Contract-10y", kind="file")
    with pytest.raises(RetentionNotPublished, match="not under the retention policy 'EU-Contract-10y'"):
        platform.apply_retention(platform.upload(bare.id, "note.pdf", b"%PDF").id, "EU-Contract-10y", kind="file")
    assert len(box.retention_assignments(box.find_retention_policy("EU-Contract-10y").id)) == assignments  # none made
    assert not platform.has_retention(bare.id, "EU-Contract-10y")


def test_a_template_field_another_process_added_meanwhile_is_not_added_twice(sim: BoxSim, box: BoxClient) -> None:
    folder = box.ensure_folder("GLOBEX/Matters")
    box.ensure_metadata(folder.id, {"ClientId": "GLOBEX"})  # this client now keeps the template
    other = BoxClient.from_settings(settings_for(sim))
    try:
        other.ensure_template(["DocumentClass"])  # another worker, or a person, adds a field
    finally:
        other.close()
    assert box.ensure_metadata(folder.id, {"DocumentClass": "engagement_letter"})["DocumentClass"] == \
        "engagement_letter"
    template = box.get_template()
    assert template is not None and [f.key for f in template.fields].count("DocumentClass") == 1
