"""A process's link to a server: one log line per change of state, backoff with jitter, turns taken by threads
that reconnect together, and a stop after credentials refused a few times in a row."""

from __future__ import annotations

import threading
from typing import Any

import pika.exceptions
import pytest
import redis
from dramatiq.errors import ConnectionClosed
from structlog.testing import capture_logs

from hub.connectivity import Backoff, ServerLink, describe, refuses_credentials
from hub.errors import ConfigurationError, CredentialsRefused

URL = "amqp://hub:s3cret-pw@rabbit.internal:5672/%2F"
DOWN = pika.exceptions.AMQPConnectionError("Connection refused")
REFUSED = pika.exceptions.ProbableAuthenticationError(
    "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN'")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def link(**options: Any) -> ServerLink:
    return ServerLink("RabbitMQ", URL, setting="HUB_AMQP_URL", draw=lambda: 0.5, **options)


def test_the_backoff_doubles_up_to_its_ceiling_and_jitters_below_it() -> None:
    backoff = Backoff(first_s=0.5, max_s=5.0, jitter=0.5)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay(3, draw=0.0) == 2.0
    assert backoff.delay(3, draw=0.999) == pytest.approx(1.001)
    assert backoff.delay(50, draw=0.0) == 5.0
    assert backoff.every() == "every 2.5-5 s"


def test_a_backoff_that_cannot_wait_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Backoff(first_s=0.0)
    with pytest.raises(ConfigurationError):
        Backoff(first_s=2.0, max_s=1.0)
    with pytest.raises(ConfigurationError):
        Backoff(jitter=1.0)


def test_a_long_outage_is_three_lines_lost_still_down_and_restored_without_the_password() -> None:
    server = link()
    server.succeeded()
    with capture_logs() as logs:
        server.lost(DOWN)
        delays = [server.failed(DOWN) for _ in range(40)]
        server.lost(DOWN)
        server.succeeded()
        server.succeeded()
    said = [entry for entry in logs if entry["log_level"] != "debug"]
    assert [entry["event"] for entry in said] == [
        "RabbitMQ connection lost at amqp://***@rabbit.internal:5672/%2F; retrying, backing off up to 5 s",
        "RabbitMQ still does not answer at amqp://***@rabbit.internal:5672/%2F after 5 attempts; "
        "retrying every 2.5-5 s",
        "RabbitMQ connection restored at amqp://***@rabbit.internal:5672/%2F after 0.0 s",
    ]
    assert said[0]["reason"] == "AMQPConnectionError: Connection refused"
    assert said[2]["failed_attempts"] == 40
    assert "s3cret-pw" not in repr(logs)
    assert delays[:5] == [0.375, 0.75, 1.5, 3.0, 3.75] and max(delays) == 3.75  # draw 0.5: 3/4 of the ceiling
    assert not server.down


def test_a_server_never_reached_does_not_answer_and_is_then_established() -> None:
    server = link()
    with capture_logs() as logs:
        server.failed(DOWN)
        server.succeeded()
    assert [entry["event"].split(" at ")[0] for entry in logs if entry["log_level"] != "debug"] == [
        "RabbitMQ does not answer", "RabbitMQ connection established"]


def test_credentials_refused_three_times_in_a_row_stop_once_naming_the_server_and_url() -> None:
    server = link()
    stops: list[str] = []
    server.on_refused(lambda: stops.append("stop"))
    with capture_logs() as logs:
        for _ in range(4):
            server.failed(REFUSED)
    assert stops == ["stop"]
    assert isinstance(server.refused, CredentialsRefused)
    message = str(server.refused)
    assert message.startswith("RabbitMQ at amqp://***@rabbit.internal:5672/%2F refused the hub's credentials "
                              "3 times in a row (ProbableAuthenticationError: ")
    assert "ACCESS_REFUSED" in message and message.endswith("check the user name and password in HUB_AMQP_URL")
    assert "s3cret-pw" not in message and "hub:" not in message
    said = [(entry["log_level"], entry["event"]) for entry in logs if entry["log_level"] != "debug"]
    assert said == [("warning", "RabbitMQ refused the hub's credentials at amqp://***@rabbit.internal:5672/%2F; "
                                 "trying 2 more times before stopping"),
                    ("error", message)]
    late: list[str] = []
    server.on_refused(lambda: late.append("stop"))  # registered after the fact: called at once
    assert late == ["stop"]
    assert not server.due() and not server.turn(threading.Event())


def test_only_refusals_in_a_row_count_and_a_success_forgets_them() -> None:
    server = link()
    for error in (REFUSED, REFUSED, DOWN, REFUSED, REFUSED):
        server.failed(error)
    assert server.refused is None  # the outage in between broke the run
    server.succeeded()
    server.failed(REFUSED)
    server.failed(REFUSED)
    assert server.refused is None
    server.failed(REFUSED)
    assert server.refused is not None


def test_a_redis_password_refused_counts_as_a_refusal() -> None:
    server = ServerLink("Redis", "redis://:pw@cache:6379/0", auth_limit=1)
    server.lost(redis.AuthenticationError("WRONGPASS invalid username-password pair"))
    assert server.refused is not None and "Redis at redis://***@cache:6379/0" in str(server.refused)


def test_while_down_an_attempt_is_due_only_once_the_backoff_has_passed() -> None:
    clock = Clock()
    server = link(clock=clock)
    assert server.due()
    delay = server.failed(DOWN)
    assert not server.due()
    clock.now += delay
    assert server.due()


def test_threads_reconnecting_together_take_turns_and_follow_the_first_ones_outcome() -> None:
    clock = Clock()
    server = link(clock=clock)
    server.succeeded()
    server.lost(DOWN)  # a lost connection may be retried at once, by one caller
    stop = threading.Event()
    assert server.turn(stop)
    second_turn = threading.Event()
    waiter = threading.Thread(target=lambda: server.turn(stop) and second_turn.set(), daemon=True)
    waiter.start()
    assert not second_turn.wait(0.3), "a second caller must wait for the outcome of the first one's turn"
    server.succeeded()
    assert second_turn.wait(5.0)
    waiter.join(5.0)


def test_a_caller_waiting_for_its_turn_gives_up_when_told_to_stop() -> None:
    server = link()
    server.failed(DOWN)  # the next attempt is not due for a while
    stop = threading.Event()
    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(server.turn(stop)), daemon=True)
    waiter.start()
    stop.set()
    waiter.join(5.0)
    assert answers == [False]


def test_waiting_for_the_next_attempt_returns_once_it_is_due_or_when_told_to_stop_or_refused() -> None:
    clock = Clock()
    server = link(clock=clock)
    stop = threading.Event()
    assert server.wait_due(stop, timeout=0.0)  # the server answers: no wait
    delay = server.failed(DOWN)
    assert not server.wait_due(stop, timeout=0.0)  # the backoff has not passed and the time is up
    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(server.wait_due(stop, timeout=60.0)), daemon=True)
    waiter.start()
    clock.now += delay  # the backoff passes: the waiter sees it within its bounded wait
    waiter.join(5.0)
    assert answers == [True]
    server.failed(DOWN)
    stopping = threading.Thread(target=lambda: answers.append(server.wait_due(stop, timeout=60.0)), daemon=True)
    stopping.start()
    stop.set()
    stopping.join(5.0)
    assert answers == [True, False]
    refused = link(clock=clock, auth_limit=1)
    refused.failed(REFUSED)
    clock.now += 60.0
    assert not refused.wait_due(threading.Event(), timeout=60.0)  # no wait mends refused credentials


@pytest.mark.parametrize("error", [
    REFUSED,
    pika.exceptions.ConnectionClosedByBroker(403, "ACCESS_REFUSED - Login was refused"),
    pika.exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED - configure access to queue refused"),
    ConnectionClosed(REFUSED),  # Dramatiq's wrapper of pika's error
    redis.AuthenticationError("invalid password"),
    # What pika raises when RabbitMQ closes the connection at the virtual host (as for a user without rights on it).
    pika.exceptions.ProbableAccessDeniedError(repr(pika.exceptions.ConnectionClosedByBroker(530, "NOT_ALLOWED"))),
])
def test_refused_credentials_are_told_from_outages(error: BaseException) -> None:
    assert refuses_credentials(error)


@pytest.mark.parametrize("error", [
    DOWN,
    pika.exceptions.StreamLostError("Transport indicated EOF"),
    pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection closure"),
    ConnectionClosed(DOWN),
    redis.ConnectionError("Connection refused"),
    # A stream cut while logging in or opening the virtual host: pika guesses a refusal from the stage alone.
    pika.exceptions.ProbableAccessDeniedError(repr(pika.exceptions.StreamLostError("Transport indicated EOF"))),
    pika.exceptions.ProbableAuthenticationError(repr(pika.exceptions.StreamLostError("Transport indicated EOF"))),
    ConnectionClosed(pika.exceptions.ProbableAccessDeniedError(repr(pika.exceptions.StreamLostError("EOF")))),
])
def test_outages_are_not_refusals(error: BaseException) -> None:
    assert not refuses_credentials(error)


def test_a_reason_is_one_masked_line_of_bounded_length() -> None:
    text = describe(ConnectionClosed(pika.exceptions.AMQPConnectionError(f"cannot reach {URL}\n" + "x" * 500)))
    assert text.startswith("AMQPConnectionError: cannot reach amqp://***@rabbit.internal:5672/%2F x")
    assert "\n" not in text and len(text) == 300 and text.endswith("...")
