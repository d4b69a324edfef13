"""Backward compatibility of the schemas against the last released snapshot (``schemas/released/``).

Consumers decode history with the schemas they were given, so within a major version every event
type must stay, the current schema must read anything the released one wrote, and any change must
raise ``hub.version`` (which ``dataschema`` carries). A new major (``.v2``) is a new type and is
not compared. fastavro has no compatibility checker; the ``avro`` package's is used here.

Run ``python -m hub.compat`` to check, ``python -m hub.compat --release`` to take a new snapshot.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from hub.catalogue import HISTORY, write_revision
from hub.errors import SchemaError
from hub.registry import VERSION_ATTRIBUTE, SchemaRegistry

__all__ = ["Incompatibility", "check_backward", "main", "release"]


@dataclass(frozen=True)
class Incompatibility:
    """One reason the current schemas cannot replace the released snapshot."""

    name: str
    event_type: str | None
    reason: str

    def __str__(self) -> str:
        subject = self.name if self.event_type is None else f"{self.event_type} ({self.name})"
        return f"{subject}: {self.reason}"


def check_backward(current_dir: Path, released_dir: Path) -> list[Incompatibility]:
    """Every way the schemas in ``current_dir`` break consumers of those in ``released_dir``."""
    if not released_dir.is_dir():
        # A mistyped path must not pass as "nothing released yet".
        raise SchemaError(f"released snapshot directory {released_dir} does not exist")
    current = SchemaRegistry.load(current_dir)
    released = SchemaRegistry.load(released_dir)
    problems: list[Incompatibility] = []
    event_names = {released.for_type(event_type).name for event_type in released.event_types}
    current_names = set(current.raw_schemas())
    for name in sorted(set(released.raw_schemas()) - current_names - event_names):
        problems.append(Incompatibility(name, None, "named type removed from a released snapshot"))
    for event_type in released.event_types:
        old = released.for_type(event_type)
        if event_type not in current.event_types:
            reason = "event type removed within its major version; publish a new major instead"
            problems.append(Incompatibility(old.name, event_type, reason))
            continue
        new = current.for_type(event_type)
        for reason in _reasons(
            released.resolved(old.name), current.resolved(new.name), old.version, new.version
        ):
            problems.append(Incompatibility(new.name, event_type, reason))
    return problems


def _reasons(writer: dict[str, Any], reader: dict[str, Any], released: int, current: int) -> list[str]:
    """Why the current revision of one event type cannot replace the released one."""
    reasons = []
    if _comparable(writer) != _comparable(reader) and current <= released:
        reasons.append(f"changed without a version bump ({VERSION_ATTRIBUTE} {current}, released {released})")
    elif current < released:
        reasons.append(f"{VERSION_ATTRIBUTE} went back from {released} to {current}")
    cannot_read = _cannot_read(reader, writer)
    if cannot_read is not None:
        reasons.append(cannot_read)
    return reasons


def release(current_dir: Path, released_dir: Path, *, force: bool = False) -> list[str]:
    """Copy the current ``.avsc`` files as the new released snapshot, and record each event type's current
    revision in ``<current_dir>/history`` (:mod:`hub.catalogue`); returns the full names written.

    Refuses (SchemaError) when the current schemas are not backward compatible with the snapshot,
    unless ``force`` is set; a forced release also drops snapshot files of removed types.
    """
    registry = SchemaRegistry.load(current_dir)
    names = sorted(registry.raw_schemas())
    if released_dir.is_dir() and not force:
        problems = check_backward(current_dir, released_dir)
        if problems:
            listed = "; ".join(str(problem) for problem in problems)
            raise SchemaError(f"refusing to release incompatible schemas: {listed}")
    released_dir.mkdir(parents=True, exist_ok=True)
    for stale in released_dir.glob("*.avsc"):
        if stale.name.removesuffix(".avsc") not in names:
            stale.unlink()
    for name in names:
        # Copied byte for byte: the snapshot is what consumers were given, formatting included.
        (released_dir / f"{name}.avsc").write_bytes((current_dir / f"{name}.avsc").read_bytes())
    for event_type in registry.event_types:
        write_revision(current_dir / HISTORY, registry, event_type)
    return names


def _comparable(schema: dict[str, Any]) -> str:
    """The schema as canonical text, without the revision number it is being compared on."""
    return json.dumps(
        {key: value for key, value in schema.items() if key != VERSION_ATTRIBUTE}, sort_keys=True
    )


def _cannot_read(reader: dict[str, Any], writer: dict[str, Any]) -> str | None:
    """Why ``reader`` cannot read data written with ``writer``, or None when it can."""
    try:
        reader_schema = avro.schema.parse(json.dumps(reader))
        writer_schema = avro.schema.parse(json.dumps(writer))
    except avro.errors.AvroException as exc:
        return f"the avro package cannot parse the schema: {exc}"
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro leaves it unannotated
    result = checker.get_compatibility(reader_schema, writer_schema)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    kinds = ", ".join(sorted({kind.value for kind in result.incompatibilities}))
    # avro merges messages and locations into unordered sets, so they can only be listed side by side.
    details = "; ".join(sorted(result.messages))
    where = ", ".join(sorted(result.locations))
    return f"cannot read data written with the released schema: {kinds}: {details} (at {where})"


def main(argv: list[str] | None = None) -> int:
    """Command line: check the schemas against the snapshot, or release a new snapshot."""
    parser = argparse.ArgumentParser(prog="python -m hub.compat", description=main.__doc__)
    parser.add_argument("--schemas", type=Path, default=Path("schemas"), help="current schema directory")
    parser.add_argument("--released", type=Path, default=None, help="snapshot (default: <schemas>/released)")
    parser.add_argument("--release", action="store_true", help="write the snapshot after a passing check")
    args = parser.parse_args(argv)
    released_dir: Path = args.released or args.schemas / "released"
    try:
        if args.release:
            for name in release(args.schemas, released_dir):
                print(f"released {name}")
            return 0
        problems = check_backward(args.schemas, released_dir)
    except SchemaError as exc:
        print(f"error: {exc}")
        return 2
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
