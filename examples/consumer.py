"""An analytics consumer of the hub's events, on pika and fastavro only.

Live, from the consumer's own queue (``hub consumers add bi --bind 'erp.#'``)::

    python examples/consumer.py live --queue hub.consumer.bi

History, straight from the stream, from a point in time (needs read rights on the stream)::

    python examples/consumer.py replay --stream hub.events.history --since 2027-01-04T00:00:00Z

Each event is printed as one JSON line: its CloudEvents attributes and its data. The data is Avro without a
header; the schema it was written with is the revision ``ce-dataschema`` names, fetched once from the hub's
ingress. With ``--reader-schemas DIR`` holding ``<type>.avsc`` files (the revisions this consumer was built
against), each event is read into that revision: fields added since are skipped, fields it has and the writer
did not get their defaults (Avro schema resolution).

A message is acknowledged after it was handled; one whose data cannot be decoded is rejected, and RabbitMQ
moves it to the queue's dead-letter queue (a stream keeps everything and takes no reject: it is reported).
Copies of an event (delivery is at least once) carry the same ``ce-source`` and ``ce-id``: a consumer that
must not count twice remembers them.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import urllib.request
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pika
from fastavro import parse_schema, schemaless_reader

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class Schemas:
    """Writer schemas by ``dataschema`` URL (fetched once each), reader schemas by type (optional)."""

    def __init__(self, reader_dir: Path | None) -> None:
        self.writers: dict[str, Any] = {}
        self.readers: dict[str, Any] = {}
        for path in sorted(reader_dir.glob("*.avsc")) if reader_dir else []:
            self.readers[path.stem] = parse_schema(json.loads(path.read_text(encoding="utf-8")))

    def decode(self, event_type: str, dataschema: str, body: bytes) -> Any:
        """The event's data, read with the writer's schema into this consumer's revision, if it has one."""
        if dataschema not in self.writers:
            if not dataschema.startswith(("http://", "https://")):
                raise ValueError("ce-dataschema is not a URL")
            with urllib.request.urlopen(dataschema, timeout=10) as answer:  # noqa: S310 (http(s) checked above)
                self.writers[dataschema] = parse_schema(json.loads(answer.read()))
        return schemaless_reader(io.BytesIO(body), self.writers[dataschema], self.readers.get(event_type))


def text(value: Any) -> str | None:
    """A header value as text (pika gives bytes for some)."""
    return value.decode() if isinstance(value, bytes) else value


def plain(value: Any) -> Any:
    """Decoded data as JSON: instants and dates in ISO 8601."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value.isoformat() if isinstance(value, datetime | date) else value


class Handler:
    """The pika callback: decode, print, acknowledge; finished after ``count`` events. What cannot be decoded is
    rejected to the queue's dead letters, or, read from a stream (which keeps it and refuses a reject),
    reported and passed."""

    def __init__(self, schemas: Schemas, types: set[str], count: int | None, *, stream: bool) -> None:
        self.schemas, self.types, self.count, self.stream = schemas, types, count, stream
        self.seen = 0

    @property
    def finished(self) -> bool:
        """Whether ``count`` events were handled."""
        return self.count is not None and self.seen >= self.count

    def __call__(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        """Handle one delivery."""
        if self.finished:
            return  # prefetched after the last one: left unacknowledged, redelivered to the next reader
        headers = {name: text(value) for name, value in (properties.headers or {}).items()}
        event_type = headers.get("ce-type")
        if event_type is None or (self.types and event_type not in self.types):
            channel.basic_ack(method.delivery_tag)  # not an event (a replay's end mark), or not wanted
            return
        try:
            data = self.schemas.decode(event_type, headers.get("ce-dataschema") or "", body)
        except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError... on bad bytes
            print(json.dumps({"undecodable": headers.get("ce-id"), "reason": type(exc).__name__}), file=sys.stderr)
            if self.stream:
                channel.basic_ack(method.delivery_tag)
            else:
                channel.basic_reject(method.delivery_tag, requeue=False)  # to the dead-letter queue
            return
        print(json.dumps({"type": event_type, "id": headers.get("ce-id"), "source": headers.get("ce-source"),
                          "subject": headers.get("ce-subject"), "time": headers.get("ce-time"),
                          "offset": headers.get("x-stream-offset"), "data": plain(data)}), flush=True)
        channel.basic_ack(method.delivery_tag)
        self.seen += 1


def main(argv: list[str] | None = None) -> int:
    """Consume live from a queue, or replay the history stream from a point in time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["live", "replay"])
    parser.add_argument("--amqp-url", default=AMQP_URL)
    parser.add_argument("--queue", help="live: the consumer's queue")
    parser.add_argument("--stream", default="hub.events.history", help="replay: the history stream")
    parser.add_argument("--since", help="replay: RFC 3339 instant to start from (default: the first event kept)")
    parser.add_argument("--type", dest="types", action="append", default=[], help="only this type (repeat)")
    parser.add_argument("--count", type=int, help="stop after this many events")
    parser.add_argument("--reader-schemas", type=Path, help="folder of <type>.avsc: this consumer's revisions")
    args = parser.parse_args(argv)
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=100)  # a stream needs a prefetch; a queue is better with one too
    on_message = Handler(Schemas(args.reader_schemas), set(args.types), args.count, stream=args.mode == "replay")
    if args.mode == "live":
        if not args.queue:
            parser.error("live needs --queue")
        channel.basic_consume(args.queue, on_message)
    else:
        offset: Any = "first"
        if args.since:
            offset = datetime.fromisoformat(args.since.replace("Z", "+00:00"))  # sent as an AMQP timestamp
        channel.basic_consume(args.stream, on_message, arguments={"x-stream-offset": offset})
    try:
        while not on_message.finished:
            connection.process_data_events(time_limit=1)  # returns at each delivery, or after a second
    except KeyboardInterrupt:
        pass
    # Closing cancels the consumer; pika rejects what it holds prefetched, which a stream refuses by closing
    # the connection: nothing is lost (a stream keeps everything), so that answer is expected there.
    try:
        connection.close()
    except pika.exceptions.AMQPError:
        if not on_message.stream:
            raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
