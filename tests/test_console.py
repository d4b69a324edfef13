"""The operator console in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium): sign-in by operator key, every page loads, an acknowledge and a replay (confirmed in the browser's
dialog) work end to end on the real RabbitMQ, Redis and PostgreSQL, and a screenshot of each page is written
(to ``HUB_CONSOLE_SCREENSHOTS`` when set, e.g. ``docs/console``, else the test's folder). Without a session, a
CSRF token or the operator role, an action is refused."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from actors.exceptions import SqlExceptionInbox
from actors.exceptions.store import Raised
from actors.invoice_readiness.facts import ProjectMeta, Verdict
from actors.invoice_readiness.logic import HoldReason, InvoiceDrafted, Readiness
from actors.invoice_readiness.store import SqlReadinessStore
from actors.reconciliation import Run, SqlReconciliationStore
from actors.reconciliation.compare import Finding
from hub.cli.compose import build_app
from hub.cli.scenario import project_created
from hub.dispatch import RoutingTable, declare_actor, event_messages
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.conftest import hub_settings
from tests.support.flaky import Flaky
from tests.support.ingress import load, serving, write_sources
from tests.support.rabbit import queue_depth, wait_until

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                 reason="needs Debian's chromium and chromium-driver (apt-get install)")]

T = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860",
                     "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _operators(directory: Path) -> tuple[Path, str, str]:
    operator, viewer = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    path = directory / "operators.yaml"
    path.write_text(f"""\
operators:
  - {{name: alice, role: operator, sha256: {hashlib.sha256(operator.encode()).hexdigest()}}}
  - {{name: bob, role: read_only, sha256: {hashlib.sha256(viewer.encode()).hexdigest()}}}
""")
    return path, operator, viewer


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("HUB_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _held_invoice(runtime: Runtime) -> None:
    meta = ProjectMeta(engagement_type="engineering", region="ME", country="SA", client_id="ACME")
    held = Readiness.of([HoldReason("DELIVERABLE_NOT_APPROVED", "D-7", "in review", name="Drainage plan.pdf",
                                    owner="pmo"),
                         HoldReason("RETENTION_LABEL_MISSING", "D-8", "no label", name="Structural calculations.pdf",
                                    owner="records_management")])
    SqlReadinessStore(runtime.db).store("ENG-ME-0007", [InvoiceDrafted("INV-E-1", "ENG-ME-0007", T, "M1")], meta,
                                        verdicts={"INV-E-1": Verdict(held, 1)})


def _reconciled(runtime: Runtime) -> Run:
    """A finished reconciliation run with two differences, as the console reads it from the database."""
    store = SqlReconciliationStore(runtime.db)
    run = Run(run_id="5c1f0f9e-0a51-4c1e-93c8-4ad0a93bd6de", started_at=T, scope=("workspaces",), repair=False)
    store.start(run)
    store.record(run.run_id, [
        (Finding("RC304", "LAW-2025-007", "Knowledge-EU", None, "write", "policy:ethical_walls", "LAW-2025-007"),
         "repaired_and_routed"),
        (Finding("RC201", "ENG-2025-001", "ProjectName", "Market entry", "edited", "erp:name", "ENG-2025-001"),
         "reported")], T)
    run.status, run.finished_at, run.compared = "completed", T, 2
    run.counts = {"RC304": 1, "RC201": 1}
    store.save(run)
    return run


def test_the_console_signs_in_shows_every_page_and_acknowledges_and_replays_end_to_end(
        prefix: str, tmp_path: Path, browser: object) -> None:
    driver: webdriver.Chrome = browser  # type: ignore[assignment]
    operators, key, viewer_key = _operators(tmp_path)
    runtime = build_app(hub_settings(prefix, operators_file=operators,
                                     trace_ui_url="http://127.0.0.1:16686/trace/{trace_id}"), embedded=False)
    shots = _shots(tmp_path)
    try:
        flaky = Flaky(runtime)
        declare_actor(runtime.broker, flaky, prefix=prefix, registry=runtime.registry, emitter=runtime.dispatcher)
        runtime.redis.set(f"{prefix}:flaky:fail", "1")
        event = project_created(runtime.registry)
        [message] = event_messages(event, RoutingTable({event.get_type(): ("flaky",)}), {"flaky": f"{prefix}.flaky"})
        inbox = SqlExceptionInbox(runtime.db)
        label = inbox.record(Raised("lbl-1", "records_management", "provisioning.retention_label_unpublished",
                                    "DE-Engagement-10y", "medium", "retention label DE-Engagement-10y is not "
                                    "published by the tenant", T))
        _held_invoice(runtime)
        path, _ = write_sources(tmp_path)
        with running_worker(runtime, threads=2), serving(runtime, load(path)) as url:
            runtime.broker.enqueue(message)
            assert wait_until(lambda: queue_depth(f"{prefix}.flaky.XQ") == 1 and len(inbox.cases()) == 2, timeout=30)
            wait = WebDriverWait(driver, 20)

            driver.get(f"{url}/console")
            wait.until(expected_conditions.url_contains("/console/login"))
            driver.save_screenshot(str(shots / "login.png"))
            driver.find_element(By.ID, "key").send_keys("not-a-key")
            driver.find_element(By.ID, "sign-in").click()
            wait.until(expected_conditions.presence_of_element_located((By.ID, "login-failed")))
            driver.find_element(By.ID, "key").send_keys(key)
            driver.find_element(By.ID, "sign-in").click()
            wait.until(expected_conditions.presence_of_element_located((By.ID, "health")))
            health = driver.find_element(By.ID, "health").text
            assert "RabbitMQ" in health and "Redis" in health and "Database" in health and "down" not in health
            assert "DELIVERABLE_NOT_APPROVED" in driver.find_element(By.ID, "held-by-code").text
            assert "flaky\n1" in driver.find_element(By.ID, "dead-by-actor").text
            assert key not in driver.page_source
            driver.save_screenshot(str(shots / "overview.png"))

            driver.get(f"{url}/console/exceptions")
            row = wait.until(expected_conditions.presence_of_element_located((By.ID, f"case-{label.case_id}")))
            assert "DE-Engagement-10y" in row.text and "open" in row.text
            row.find_element(By.CSS_SELECTOR, "button.ack").click()
            wait.until(expected_conditions.text_to_be_present_in_element((By.ID, f"case-{label.case_id}"),
                                                                         "console:alice"))
            assert inbox.case(label.case_id).state == "acknowledged"
            driver.save_screenshot(str(shots / "exceptions.png"))

            driver.get(f"{url}/console/invoices")
            held = wait.until(expected_conditions.presence_of_element_located((By.ID, "held")))
            assert "INV-E-1" in held.text and "Drainage plan.pdf" in held.text and "records_management" in held.text
            driver.save_screenshot(str(shots / "invoices.png"))

            runtime.redis.delete(f"{prefix}:flaky:fail")  # the cause is fixed
            driver.get(f"{url}/console/dead-letters")
            letter_id = f"letter-{message.message_id}"
            letter = wait.until(expected_conditions.presence_of_element_located((By.ID, letter_id)))
            assert "the ERP refused the project" in letter.text
            driver.save_screenshot(str(shots / "dead-letters.png"))
            letter.find_element(By.CSS_SELECTOR, "button.replay").click()
            dialog = wait.until(expected_conditions.alert_is_present())
            assert "Replay this dead letter" in dialog.text
            dialog.accept()
            wait.until(expected_conditions.text_to_be_present_in_element((By.ID, letter_id), "replayed"))
            assert wait_until(lambda: runtime.redis.get(f"{prefix}:flaky:done") == b"1", timeout=30)
            assert queue_depth(f"{prefix}.flaky.XQ") == 0

            driver.get(f"{url}/console/journey?event_id={event.get_id()}")
            journey = wait.until(expected_conditions.presence_of_element_located((By.ID, "journey")))
            assert "flaky" in journey.text and "#1 dead" in journey.text and "ok" in journey.text
            assert journey.find_elements(By.CSS_SELECTOR, "a[href^='http://127.0.0.1:16686/trace/']")
            driver.save_screenshot(str(shots / "journey.png"))

            run = _reconciled(runtime)
            driver.get(f"{url}/console/reconciliation")
            classes = wait.until(expected_conditions.presence_of_element_located((By.ID, "classes")))
            assert "RC304 walled_grant" in classes.text and "RC201 metadata_drift" in classes.text
            assert driver.find_element(By.ID, "differences").text == "2"
            assert run.run_id[:8] in driver.find_element(By.ID, "runs").text
            driver.save_screenshot(str(shots / "reconciliation.png"))
            driver.find_element(By.LINK_TEXT, "RC304").click()
            wait.until(expected_conditions.url_contains("code=RC304"))
            findings = driver.find_element(By.ID, "findings").text
            assert "Knowledge-EU" in findings and "repaired and routed" in findings and "ProjectName" not in findings

            driver.get(f"{url}/console/jobs")
            jobs = wait.until(expected_conditions.presence_of_element_located((By.ID, "jobs")))
            assert "readiness_rebuild" in jobs.text and "flight_record_expiry" in jobs.text
            driver.save_screenshot(str(shots / "jobs.png"))

            cookie = {"hub_console": driver.get_cookie("hub_console")["value"]}
            unguarded = httpx.post(f"{url}/console/exceptions/{label.case_id}/resolve", cookies=cookie)
            assert unguarded.status_code == 403  # no CSRF token
            assert httpx.post(f"{url}/console/exceptions/{label.case_id}/resolve").status_code == 401
            with httpx.Client(base_url=url) as viewer:
                signed_in = viewer.post("/console/login", data={"key": viewer_key})
                assert signed_in.status_code == 303
                page = viewer.get("/console/exceptions")
                assert page.status_code == 200 and "button" not in page.text.split('id="cases"')[1].split("</table>")[0]
                token = page.text.split('"X-CSRF-Token": "')[1].split('"')[0]
                refused = viewer.post(f"/console/exceptions/{label.case_id}/resolve",
                                      headers={"X-CSRF-Token": token})
                assert refused.status_code == 403 and "read-only" in refused.text
            assert inbox.case(label.case_id).state == "acknowledged"
    finally:
        runtime.close()
