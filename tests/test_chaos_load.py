"""The fault suite's load (chaos.load): a run cut short stops posting, instead of posting again for ever to an
ingress that is gone (the process then waited for its posting threads and never ended)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from bench.procs import new_webhook_secret
from chaos.load import Publisher
from tests.support.rabbit import wait_until


def test_a_load_told_to_stop_stops_posting_to_an_ingress_that_is_gone() -> None:
    with socket.socket() as sock:  # a port nothing listens on: every post fails and is posted again
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    publisher = Publisher(f"http://127.0.0.1:{port}", new_webhook_secret(), ["P-1", "P-2", "P-3"], rate=100,
                          threads=3, deadline_s=3600).start()
    assert wait_until(lambda: sum(publisher.result.retried.values()) >= 3, timeout=30)
    publisher.stop()
    result = publisher.join()  # returns: every lane stopped at its next wait
    assert result.done.is_set()
    assert result.accepted == {}


def test_waiting_for_a_point_of_the_load_lasts_while_events_are_accepted_and_ends_when_none_are() -> None:
    publisher = Publisher("http://127.0.0.1:9", new_webhook_secret(), ["P-1"], rate=1, threads=1, deadline_s=3600)
    stall_s = 0.5
    accepting = threading.Event()

    def accept_slowly() -> None:  # 20 events, one every stall_s / 5: longer than stall_s in all, never stalled
        for i in range(20):
            publisher.result.accepted[f"e{i}"] = ("P-1", time.monotonic())
            accepting.wait(stall_s / 5)

    feeder = threading.Thread(target=accept_slowly)
    feeder.start()
    publisher.wait_accepted(20, stall_s=stall_s)
    feeder.join()
    assert publisher.accepted_count() == 20
    with pytest.raises(TimeoutError, match=r"20 of 21 events accepted, none in the last 0\.5 s"):
        publisher.wait_accepted(21, stall_s=stall_s)
