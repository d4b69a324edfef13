"""The load of a scenario: ERP projects, and their ``erp.project.created.v1`` events posted to the ingress.

The projects are created in the ERP simulator first (provisioning reads the ERP's record), then a
:class:`Publisher` posts one signed structured CloudEvent per project through the real HTTP edge, at a
fixed rate from a few threads, as a source system's outbox would: a refused event (503 while a server is
down, a transport error) is posted again with a fresh signature until it is answered 202 or the deadline
passes. Only a 202 counts as accepted; its time is kept for the recovery figure.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.loadgen import STRUCTURED, RequestFactory
from bench.procs import BENCH_SOURCE
from hub.cli.scenario import erp_payload

#: The event type posted: provisioning, master data and the fan-out each take it.
EVENT_TYPE = "erp.project.created.v1"
#: The client every project belongs to.
CLIENT_ID = "C-CHAOS"
#: Waits between two posts of a refused event: from the first, doubling up to the last.
RETRY_WAITS_S = (0.2, 0.5, 1.0, 2.0)


def project_codes(tag: str, count: int) -> list[str]:
    """The ``count`` project codes of a run."""
    return [f"ENG-{tag}-{i:05d}" for i in range(count)]


def seed_erp(erp: httpx.Client, codes: Sequence[str], *, threads: int = 4) -> None:
    """Create the client and one engagement per code in the ERP (``erp``: a client on its ``/api/v1``)."""
    erp.post("/clients", json={"id": CLIENT_ID, "name": "Chaos Corp", "country": "DE"}).raise_for_status()
    base = erp_payload()

    def create(code: str) -> None:
        body = {"code": code, "client_id": CLIENT_ID, "name": f"{base['name']} {code}",
                "engagement_type": base["engagement_type"], "practice": base["practice"], "region": base["region"],
                "country": base["country"], "partner": base["partner"], "billing_model": base["billing_model"]}
        erp.post("/projects", json=body).raise_for_status()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, codes))


def event_document(code: str) -> dict[str, Any]:
    """The structured CloudEvent the ERP would post for the project ``code``."""
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": BENCH_SOURCE, "type": EVENT_TYPE,
            "subject": code, "partitionkey": f"project:{code}", "datacontenttype": "application/json",
            "data": {**erp_payload(), "project_code": code, "client_id": CLIENT_ID}}


@dataclass
class Published:
    """What the publisher did so far (read from other threads: counts only grow)."""

    #: Event id -> project code and monotonic time of its 202.
    accepted: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: Events given up (a permanent refusal or the deadline), with the last status or error.
    refused: dict[str, str] = field(default_factory=dict)
    #: Posts answered otherwise than 202 (then posted again), by status or error type.
    retried: dict[str, int] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


class Publisher:
    """Posts the events of ``codes`` to ``ingress_url`` at ``rate`` events/s from ``threads`` threads."""

    def __init__(self, ingress_url: str, secret: str, codes: Sequence[str], *, rate: float, threads: int = 6,
                 deadline_s: float) -> None:
        self._url, self._codes, self._rate, self._threads = ingress_url, list(codes), rate, threads
        self._signer = RequestFactory(secret, tag="chaos")
        self._deadline = time.monotonic() + deadline_s
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._start = 0.0
        self.result = Published()
        self._stopped = threading.Event()
        self._runner = threading.Thread(target=self._run, name="chaos-publisher", daemon=True)

    def start(self) -> Publisher:
        """Start posting in the background."""
        self._start = time.monotonic()
        self._runner.start()
        return self

    def join(self) -> Published:
        """Wait until every event was accepted or given up."""
        self._runner.join()
        return self.result

    def stop(self) -> None:
        """Stop posting (a run cut short): every lane returns at its next post or wait."""
        self._stopped.set()

    def accepted_count(self) -> int:
        """Events accepted so far."""
        return len(self.result.accepted)

    def wait_accepted(self, count: int, *, stall_s: float = 600.0) -> None:
        """Wait until ``count`` events were accepted (or the load is over). TimeoutError when none was accepted for
        ``stall_s``: the wait lasts as long as the load takes to offer them at its rate (4,000 events at 6 a second
        take 667 s), and an ingress that accepts nothing more is still found."""
        seen, since = self.accepted_count(), time.monotonic()
        while (accepted := self.accepted_count()) < count and not self.result.done.is_set():
            if accepted != seen:
                seen, since = accepted, time.monotonic()
            elif time.monotonic() - since > stall_s:
                raise TimeoutError(f"{accepted} of {count} events accepted, none in the last {stall_s:g} s")
            time.sleep(0.05)

    def _run(self) -> None:
        try:
            with ThreadPoolExecutor(self._threads, thread_name_prefix="chaos-post") as pool:
                list(pool.map(lambda _: self._lane(), range(self._threads)))
        finally:
            self.result.done.set()

    def _lane(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30.0) as client:
            while not self._stopped.is_set():
                with self._lock:
                    index = next(self._next)
                if index >= len(self._codes):
                    return
                delay = self._start + index / self._rate - time.monotonic()
                if delay > 0 and self._stopped.wait(delay):
                    return
                self._post(client, self._codes[index])

    def _post(self, client: httpx.Client, code: str) -> None:
        document = event_document(code)
        body = json.dumps(document, separators=(",", ":")).encode()
        for attempt in itertools.count():
            try:
                status = client.post("/v1/events", content=body,
                                     headers={"content-type": STRUCTURED, **self._signer.sign(body)}).status_code
                outcome = str(status)
            except httpx.HTTPError as exc:
                status, outcome = 0, type(exc).__name__
            with self._lock:
                if status == 202:
                    self.result.accepted[document["id"]] = (code, time.monotonic())
                    return
                self.result.retried[outcome] = self.result.retried.get(outcome, 0) + 1
                if (400 <= status < 500 and status not in (408, 429)) or time.monotonic() > self._deadline:
                    self.result.refused[document["id"]] = outcome
                    return
            if self._stopped.wait(RETRY_WAITS_S[min(attempt, len(RETRY_WAITS_S) - 1)]):
                return
