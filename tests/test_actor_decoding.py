"""A worker reads a message's event once: from the mapping Dramatiq decoded, and its Avro data only when the actor
reads it (the fan-out passes the bytes on and never does); data that is no Avro of its type still fails the
message, when it is read. Through ``declare_actor`` on a Dramatiq worker (the stub broker)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from hub.actor import ActorContext, ActorSpec, RecordingEmitter
from hub.cli.scenario import project_created
from hub.dispatch import declare_actor
from hub.errors import SchemaViolation
from hub.events import to_message_body
from hub.registry import SchemaRegistry


class CountingRegistry:
    """The registry, counting the Avro decodes asked of it."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.decodes = 0

    def decode(self, event_type: str, payload: bytes) -> dict[str, Any]:
        self.decodes += 1
        return self.registry.decode(event_type, payload)

    def encode(self, event_type: str, record: Any) -> bytes:
        return self.registry.encode(event_type, record)

    def for_type(self, event_type: str) -> Any:
        return self.registry.for_type(event_type)


class Reading:
    """An actor that does what it is told with the context."""

    def __init__(self, name: str, does: Callable[[ActorContext], None]) -> None:
        self.spec = ActorSpec(name=name, triggers=("erp.project.created.v1",), max_attempts=1, dead_letters_to=None)
        self.does = does
        self.seen: list[Any] = []
        self.failed: list[BaseException] = []

    def handle(self, context: ActorContext) -> None:
        try:
            self.does(context)
        except BaseException as exc:
            self.failed.append(exc)
            raise
        self.seen.append(context.event.get_id())


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    broker = StubBroker()
    broker.emit_after("process_boot")
    yield broker
    broker.close()


def _run(broker: StubBroker, actor: Reading, registry: CountingRegistry, body: dict[str, Any]) -> None:
    declared = declare_actor(broker, actor, prefix="t", registry=registry, emitter=RecordingEmitter())
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        declared.send(body)
        broker.join(declared.queue_name, fail_fast=False, timeout=10_000)
        worker.join()
    finally:
        worker.stop()


def test_an_actor_that_does_not_read_the_data_never_decodes_it(broker: StubBroker) -> None:
    registry = CountingRegistry(SchemaRegistry.load())
    event = project_created(registry.registry)
    actor = Reading("passes", lambda context: None)
    _run(broker, actor, registry, to_message_body(event))
    assert actor.seen == [event.get_id()]
    assert registry.decodes == 0


def test_an_actor_that_reads_the_data_twice_decodes_it_once(broker: StubBroker) -> None:
    registry = CountingRegistry(SchemaRegistry.load())
    event = project_created(registry.registry)
    codes: list[str] = []
    actor = Reading("reads", lambda context: codes.extend([context.data["project_code"],
                                                            context.data["project_code"]]))
    _run(broker, actor, registry, to_message_body(event))
    assert actor.seen == [event.get_id()]
    assert registry.decodes == 1 and len(codes) == 2 and codes[0] == codes[1]


def test_data_that_is_no_avro_of_its_type_fails_the_message_when_it_is_read(broker: StubBroker) -> None:
    registry = CountingRegistry(SchemaRegistry.load())
    body = to_message_body(project_created(registry.registry)) | {
        "data_base64": base64.b64encode(b"\xff\xff\xff").decode()}
    actor = Reading("reads", lambda context: context.data)
    _run(broker, actor, registry, body)
    assert actor.seen == []
    assert [type(exc) for exc in actor.failed] == [SchemaViolation]
