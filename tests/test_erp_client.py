"""The ERP client against the simulator over real HTTP, and its error mapping on ``httpx.MockTransport``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from connectors.erp.client import (
    ClientNotFound,
    ErpClient,
    ErpNotFound,
    Invoice,
    InvoiceNotFound,
    Money,
    ProjectNotFound,
    TimeEntry,
)
from connectors.http import CircuitBreaker, Http, RetryPolicy
from connectors.settings import ErpSettings
from hub.errors import UpstreamRejected, UpstreamUnavailable
from tests.test_erp_simulator import (
    TOKEN,
    add_milestone,
    draft_invoice,
    project_body,
    running_sim,
    seed_client,
    set_faults,
)


class Sleeps:
    """A ``sleep`` that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sim() -> Iterator[tuple[str, FastAPI]]:
    with running_sim() as (url, app), httpx.Client(
            base_url=f"{url}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as api:
        seed_client(api)
        for code in ("ENG-ACME-0001", "LEG-ACME-0002"):
            assert api.post("/projects", json=project_body(code)).status_code == 201
        yield url, app


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def erp(sim: tuple[str, FastAPI], sleeps: Sleeps) -> Iterator[ErpClient]:
    settings = ErpSettings(url=sim[0], token=SecretStr(TOKEN))
    client = ErpClient.from_settings(settings, client=httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)))
    client.http = Http(client.http.client, target="erp", sleep=sleeps,
                       retry=RetryPolicy(attempts=3, backoff_s=0.01),
                       breaker=CircuitBreaker(threshold=3, reset_s=60))
    yield client
    client.close()


def test_get_project_returns_a_typed_project(erp: ErpClient) -> None:
    project = erp.get_project("ENG-ACME-0001")
    assert (project.code, project.region, project.engagement_type) == ("ENG-ACME-0001", "EU", "consulting")
    assert project.value == Money(amount_minor=48_000_000, currency="EUR")
    assert project.start_date == date(2027, 1, 4) and project.updated_at.tzinfo is not None
    assert project.workspace_url is None and project.version == 1
    assert erp.get_client("C-ACME").name == "ACME GmbH"


def test_an_unknown_project_or_client_is_a_permanent_not_found(erp: ErpClient, sleeps: Sleeps) -> None:
    with pytest.raises(ProjectNotFound) as caught:
        erp.get_project("ENG-NOPE")
    assert isinstance(caught.value, UpstreamRejected) and not caught.value.retryable
    with pytest.raises(ProjectNotFound):
        erp.set_workspace_link("ENG-NOPE", "https://sp/ws", idempotency_key="evt-1")
    with pytest.raises(ClientNotFound):
        erp.get_client("C-NOPE")
    assert sleeps.calls == []


def test_list_projects_reads_every_page(sim: tuple[str, FastAPI], erp: ErpClient) -> None:
    with httpx.Client(base_url=f"{sim[0]}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as api:
        for n in range(5):
            api.post("/projects", json=project_body(f"ENG-{n:03d}"))
    paged = [p.code for p in erp.iter_projects(page_size=2)]
    assert len(paged) == 7 and len(set(paged)) == 7
    assert [p.code for p in erp.list_projects()] == paged
    later = erp.set_workspace_link("ENG-002", "https://sp/ws/2", idempotency_key="evt-9")
    assert [p.code for p in erp.list_projects(updated_since=later.updated_at)] == ["ENG-002"]
    assert erp.list_projects(datetime(2999, 1, 1, tzinfo=UTC)) == []


def test_writes_are_ensures_a_repeat_changes_nothing(erp: ErpClient) -> None:
    linked = erp.set_workspace_link("ENG-ACME-0001", "https://sp/sites/acme/ws", idempotency_key="evt-1")
    assert (linked.workspace_url, linked.version) == ("https://sp/sites/acme/ws", 2)
    assert erp.set_workspace_link("ENG-ACME-0001", "https://sp/sites/acme/ws", idempotency_key="evt-2").version == 2
    enabled = erp.enable_time_entry("ENG-ACME-0001", idempotency_key="evt-1")  # one key, several operations
    assert enabled.time_entry_enabled and enabled.version == 3
    valued = erp.update_project_value("ENG-ACME-0001", Money(amount_minor=52_000_000, currency="EUR"),
                                      idempotency_key="evt-3")
    assert valued.value == Money(amount_minor=52_000_000, currency="EUR")
    billed = erp.activate_billing_codes("LEG-ACME-0002", ["LIT-01", "LIT-02"], idempotency_key="evt-4")
    assert billed.billing_codes_active
    assert erp.activate_billing_codes("LEG-ACME-0002", ["LIT-01", "LIT-02"], idempotency_key="evt-5").version == \
        billed.version
    assert [(b.code, b.active) for b in erp.billing_codes("LEG-ACME-0002")] == [("LIT-01", True), ("LIT-02", True)]


def test_a_stale_if_match_is_rejected_not_retried(erp: ErpClient, sleeps: Sleeps) -> None:
    with pytest.raises(UpstreamRejected):
        erp.update_project("ENG-ACME-0001", {"status": "active"}, idempotency_key="evt-1", if_match=7)
    assert erp.update_project("ENG-ACME-0001", {"status": "active"}, idempotency_key="evt-2", if_match=1).version == 2
    assert sleeps.calls == []


def test_retries_honour_retry_after(sim: tuple[str, FastAPI], erp: ErpClient, sleeps: Sleeps) -> None:
    set_faults(sim[0], throttle_rate=1.0, retry_after_s=2)
    with pytest.raises(UpstreamUnavailable) as caught:
        erp.get_project("ENG-ACME-0001")
    assert sleeps.calls == [2.0, 2.0] and caught.value.retry_after == 2.0
    assert sim[1].state.faults.injected["throttle"] == 3


def test_a_blip_is_retried_through_to_success(sim: tuple[str, FastAPI], erp: ErpClient, sleeps: Sleeps) -> None:
    set_faults(sim[0], error_rate=0.5, seed=3)
    codes = [erp.enable_time_entry("ENG-ACME-0001", idempotency_key="evt-1").code for _ in range(6)]
    assert codes == ["ENG-ACME-0001"] * 6
    assert sim[1].state.faults.injected["error"] == len(sleeps.calls) > 0


def test_the_circuit_opens_during_an_outage(sim: tuple[str, FastAPI], erp: ErpClient) -> None:
    set_faults(sim[0], outage=True)
    for _ in range(3):  # three failed requests (three attempts each): the breaker's threshold
        with pytest.raises(UpstreamUnavailable):
            erp.get_project("ENG-ACME-0001")
    assert erp.http.breaker.open
    with pytest.raises(UpstreamUnavailable, match="circuit open") as caught:
        erp.get_project("ENG-ACME-0001")
    assert caught.value.retry_after is not None and caught.value.retry_after > 50
    assert sim[1].state.faults.injected["outage"] == 9  # the open circuit sent nothing


def test_a_ghosted_write_retried_with_its_key_is_applied_once(sim: tuple[str, FastAPI]) -> None:
    settings = ErpSettings(url=sim[0], token=SecretStr(TOKEN))
    erp = ErpClient.from_settings(settings, client=httpx.Client(timeout=httpx.Timeout(0.4, connect=1.0)))
    erp.http = Http(erp.http.client, target="erp", sleep=Sleeps(), retry=RetryPolicy(attempts=2))
    set_faults(sim[0], ghost_rate=1.0)
    with pytest.raises(UpstreamUnavailable, match="timed out"):
        erp.set_workspace_link("ENG-ACME-0001", "https://sp/ws/1", idempotency_key="evt-1")
    set_faults(sim[0])
    project = erp.get_project("ENG-ACME-0001")
    assert (project.workspace_url, project.version) == ("https://sp/ws/1", 2)
    assert erp.set_workspace_link("ENG-ACME-0001", "https://sp/ws/1", idempotency_key="evt-1").version == 2
    erp.close()


# -- error mapping on MockTransport ------------------------------------------------------------------


def mock_erp(handler: Callable[[httpx.Request], httpx.Response], sleeps: Sleeps) -> tuple[ErpClient, list[str]]:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url} {request.headers.get('authorization')}")
        return handler(request)

    settings = ErpSettings(url="https://erp.example.com/rest", token=SecretStr("s3cret"))
    erp = ErpClient.from_settings(settings, client=httpx.Client(transport=httpx.MockTransport(record)))
    erp.http = Http(erp.http.client, target="erp", sleep=sleeps, jitter=lambda: 1.0)  # the top of each draw
    return erp, seen


def test_settings_give_the_base_url_and_bearer_token(sleeps: Sleeps) -> None:
    erp, seen = mock_erp(lambda _: httpx.Response(200, json={"items": [], "next_cursor": None}), sleeps)
    assert erp.list_projects() == []
    assert seen == ["GET https://erp.example.com/rest/api/v1/projects?limit=100 Bearer s3cret"]


@pytest.mark.parametrize("status", [400, 401, 403, 409, 412, 422])
def test_permanent_errors_are_not_retried(status: int, sleeps: Sleeps) -> None:
    erp, seen = mock_erp(lambda _: httpx.Response(status, json={"error": "x"}), sleeps)
    with pytest.raises(UpstreamRejected) as caught:
        erp.enable_time_entry("ENG-1", idempotency_key="evt-1")
    assert not isinstance(caught.value, ProjectNotFound)
    assert len(seen) == 1 and sleeps.calls == []


def test_a_retry_after_date_and_a_later_success(sleeps: Sleeps) -> None:
    answers = [httpx.Response(503, headers={"retry-after": "1"}), httpx.Response(500),
               httpx.Response(200, json={"id": "C-1", "name": "n", "country": "DE", "status": "active",
                                         "updated_at": "2027-01-01T00:00:00.000Z"})]
    erp, seen = mock_erp(lambda _: answers.pop(0), sleeps)
    assert erp.get_client("C-1").id == "C-1"
    assert len(seen) == 3 and sleeps.calls == [1.0, 0.4]  # Retry-After, then the policy's backoff (full jitter's top)


def test_an_answer_of_an_unexpected_shape_is_rejected(sleeps: Sleeps) -> None:
    erp, _ = mock_erp(lambda _: httpx.Response(200, json={"code": "ENG-1", "region": "Mars"}), sleeps)
    with pytest.raises(UpstreamRejected, match="unexpected Project"):
        erp.get_project("ENG-1")


def test_a_code_is_escaped_in_the_path(sleeps: Sleeps) -> None:
    erp, seen = mock_erp(lambda _: httpx.Response(404), sleeps)
    with pytest.raises(ProjectNotFound):
        erp.get_project("A/B C")
    assert seen[0].split()[1].endswith("/projects/A%2FB%20C")


def test_updated_since_must_be_timezone_aware(sleeps: Sleeps) -> None:
    erp, _ = mock_erp(lambda _: httpx.Response(200, json={"items": []}), sleeps)
    with pytest.raises(ValueError, match="timezone-aware"):
        erp.list_projects(datetime(2027, 1, 1))



# -- invoices, milestones and time entries ------------------------------------------------------------


def test_invoices_are_listed_filtered_and_read(sim: tuple[str, FastAPI], erp: ErpClient, sleeps: Sleeps) -> None:
    with httpx.Client(base_url=f"{sim[0]}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as api:
        ms_id = add_milestone(api)
        draft_invoice(api, milestone_id=ms_id, bills=[{"document_class": "change_record", "reference": "CR-12"}])
        draft_invoice(api, "INV-2027-0002", project_code="LEG-ACME-0002", period="2027-04")
        assert api.post("/invoices/INV-2027-0002/finalize").status_code == 200
    invoices = erp.list_invoices()
    assert [i.number for i in invoices] == ["INV-2027-0001", "INV-2027-0002"]
    assert [i.number for i in erp.list_invoices(project_code="LEG-ACME-0002")] == ["INV-2027-0002"]
    assert [i.number for i in erp.list_invoices(status="draft")] == ["INV-2027-0001"]
    assert erp.list_invoices(project_code="ENG-ACME-0001", status="final") == []
    invoice = erp.get_invoice("INV-2027-0001")
    assert invoice == invoices[0] and isinstance(invoice, Invoice)
    assert (invoice.project_code, invoice.period, invoice.milestone_id, invoice.status) == (
        "ENG-ACME-0001", "2027-03", ms_id, "draft")
    assert invoice.amount == Money(amount_minor=1_000_000, currency="EUR") and invoice.updated_at.tzinfo is not None
    assert [(b.document_class, b.reference) for b in invoice.bills] == [("change_record", "CR-12")]
    assert invoices[1].bills == []
    assert erp.milestone_name("ENG-ACME-0001", ms_id) == "Diagnostic"
    assert erp.milestone_name("ENG-ACME-0001", "MS-NOPE") is None
    with pytest.raises(InvoiceNotFound) as caught:
        erp.get_invoice("INV-NOPE")
    assert isinstance(caught.value, ErpNotFound) and isinstance(caught.value, UpstreamRejected)
    assert not caught.value.retryable and sleeps.calls == []


def test_ensure_milestone_adds_then_patches_and_sends_nothing_when_equal(sim: tuple[str, FastAPI],
                                                                         erp: ErpClient) -> None:
    sent: list[str] = []
    erp.http.client.event_hooks["request"].append(lambda request: sent.append(request.method))
    state = sim[1].state.erp
    fee = Money(amount_minor=2_500_000, currency="EUR")
    added = erp.ensure_milestone("ENG-ACME-0001", "Design", fee, date(2027, 4, 30), idempotency_key="evt-1")
    assert (added.name, added.amount, added.due_date, added.status) == ("Design", fee, date(2027, 4, 30), "open")
    assert sent == ["GET", "POST"] and len(state.milestones["ENG-ACME-0001"]) == 1
    sent.clear()
    before = state.dump()
    same = erp.ensure_milestone("ENG-ACME-0001", "Design", Money(amount_minor=2_500_000, currency="EUR"),
                                date(2027, 4, 30), idempotency_key="evt-2")
    assert same == added
    assert sent == ["GET"] and state.dump() == before  # no write: nothing changed, no idempotency key stored
    assert len(state.idempotency) == 1
    sent.clear()
    raised = Money(amount_minor=2_750_000, currency="EUR")
    patched = erp.ensure_milestone("ENG-ACME-0001", "Design", raised, None, idempotency_key="evt-3")
    assert (patched.id, patched.amount, patched.due_date) == (added.id, raised, None)
    assert sent == ["GET", "PATCH"] and len(state.idempotency) == 2
    assert erp.milestones("ENG-ACME-0001") == [patched]
    other = erp.ensure_milestone("ENG-ACME-0001", "Go-live", fee, None, idempotency_key="evt-3")  # one key, two names
    assert [m.name for m in erp.milestones("ENG-ACME-0001")] == ["Design", "Go-live"] and other.id != added.id
    with pytest.raises(ProjectNotFound):
        erp.ensure_milestone("ENG-NOPE", "Design", fee, None, idempotency_key="evt-4")
    with pytest.raises(ProjectNotFound):
        erp.milestones("ENG-NOPE")


def test_time_is_booked_once_the_client_enabled_it_and_activated_the_code(sim: tuple[str, FastAPI],
                                                                          erp: ErpClient) -> None:
    entry = {"date": "2027-01-05", "hours": 7.5, "billing_code": "STRAT-01", "person": "a.jones@example-firm.com"}
    with httpx.Client(base_url=f"{sim[0]}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as api:
        path = "/projects/ENG-ACME-0001/time-entries"
        assert api.post(path, json=entry).json()["error"] == "time_entry_disabled"
        erp.enable_time_entry("ENG-ACME-0001", idempotency_key="evt-1")
        assert api.post(path, json=entry).json()["error"] == "billing_code_inactive"
        erp.activate_billing_codes("ENG-ACME-0001", ["STRAT-01"], idempotency_key="evt-1")
        booked = api.post(path, json=entry)
        assert booked.status_code == 201, booked.text
    [time_entry] = erp.time_entries("ENG-ACME-0001")
    assert isinstance(time_entry, TimeEntry) and time_entry.id == booked.json()["id"]
    assert (time_entry.date, time_entry.hours, time_entry.billing_code) == (date(2027, 1, 5), 7.5, "STRAT-01")
