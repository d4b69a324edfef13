"""The fault suite's load (chaos.load): a run cut short stops posting, instead of posting again for ever to an
ingress that is gone (the process then waited for its posting threads and never ended)."""

from __future__ import annotations

import socket

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
