"""The hub's database: the records a firm cannot lose (canonical records, the crosswalk, readiness facts)
and the outbox of the events their changes imply, written in one transaction.

PostgreSQL (psycopg 3) on the real servers, SQLite in the embedded mode: the same SQLAlchemy Core code
on both. Each hub (``HUB_QUEUE_PREFIX``) keeps its tables in its own PostgreSQL schema, as it keeps its
queues and Redis keys under its prefix. Tables are declared on :data:`metadata` by the store that owns
them; their migrations (Alembic) live beside it, in a ``migrations`` folder the composition root names
(:func:`upgrade`). Redis keeps only coordination (leases, marks, quotas, locks, the flight record).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from hub.errors import ConfigurationError, StoreUnavailable
from observability.logging import get_logger, mask_text

log = get_logger(__name__)

#: PostgreSQL's "undefined table": the migrations have not run yet.
_UNDEFINED_TABLE = "42P01"
#: Every table of the hub, declared by the store that owns it.
metadata = sa.MetaData()
#: The hub's own migrations (the outbox); the patterns' live beside their stores.
MIGRATIONS = Path(__file__).with_name("migrations")


def schema_name(prefix: str) -> str:
    """The PostgreSQL schema of a hub's tables: its queue prefix, lower-cased, ``-`` as ``_``."""
    return re.sub(r"[^a-z0-9_]", "_", prefix.lower())


@dataclass
class Database:
    """An engine on the hub's database and the schema its tables live in (None on SQLite)."""

    engine: Engine
    schema: str | None
    url: str
    _scratch: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)
    _closing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dialect(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return self.engine.dialect.name

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises. A database that
        does not answer is :class:`StoreUnavailable` (retryable), like a Redis outage."""
        with _unavailable_as_retryable(), self._transaction() as connection:
            yield connection

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement commits by itself, for a change that is one statement (an upsert
        that returns the row as it now stands): one round trip to the server instead of three (``BEGIN``, the
        statement, ``COMMIT``). Errors as :meth:`begin`'s."""
        with _unavailable_as_retryable(), self._connection() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def begin_exclusive(self, name: str) -> Iterator[Connection]:
        """One transaction that runs alone among those exclusive on ``name``, for a change decided by what
        it reads first (a crosswalk merge: the ids it moves are known only once it has read them).

        PostgreSQL: a transaction-scoped advisory lock on ``name`` in this schema, so other transactions
        go on. SQLite: the database's write lock, taken before the first read (``BEGIN IMMEDIATE``); left
        to itself the driver opens the transaction only at the first write, after the reads that decided it.
        """
        with self.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                                   {"name": f"{self.schema}:{name}"})
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._connection() as connection, connection.begin():
            yield connection

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection, which goes back to the pool afterwards, or is closed when :meth:`close` ran before
        it was given back (a worker thread finishing its message while the process shuts down, a read after the
        runtime closed): a disposed pool would keep it open until the garbage collector finds it."""
        connection = self.engine.connect()
        try:
            yield connection
        finally:
            with self._closing:
                if self._closed:
                    connection.invalidate()
                connection.close()

    def close(self) -> None:
        """Close every pooled connection, and each one in use (or taken later) once its transaction ends (and
        drop the embedded database's scratch folder)."""
        with self._closing:
            self._closed = True
            self.engine.dispose()
        if self._scratch is not None:
            self._scratch.cleanup()


@contextlib.contextmanager
def _unavailable_as_retryable() -> Iterator[None]:
    """A database that does not answer (or whose tables are not there yet) as :class:`StoreUnavailable`."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE:
            raise StoreUnavailable("database unavailable: its tables are not created yet (hub db upgrade; "
                                   "a worker does it at start)") from None
        if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
            raise
        raise StoreUnavailable(f"database unavailable: {type(exc.orig).__name__}") from None


#: A pooled connection given back longer ago than this is pinged before it is used again (one round trip): one
#: that was in use a moment ago is not, and if the server went away meanwhile its first statement fails, the pool
#: replaces every connection it holds, and the work is retried (StoreUnavailable), as work under way then is.
PING_IDLE_S = 2.0


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Pessimistic disconnect handling for connections that sat in the pool, not for those in steady use:
    SQLAlchemy's ``pool_pre_ping`` would cost a round trip on every transaction."""

    @sa.event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["returned_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("returned_at", 0.0) < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping does: SELECT 1 outside a transaction
        except Exception as exc:
            # The pool discards this connection and checks out another (a new one if need be), up to three times.
            raise sa.exc.DisconnectionError(f"a pooled connection no longer answers: {type(exc).__name__}") from exc


def connect_database(url: str, *, prefix: str, embedded: bool, ping_idle_s: float = PING_IDLE_S) -> Database:
    """A :class:`Database` for ``url``, or (``embedded``) a SQLite file in a scratch folder. Nothing
    connects here; tables exist once :func:`upgrade` ran."""
    if embedded:
        scratch = tempfile.TemporaryDirectory(prefix="hub-db-")
        sqlite_url = f"sqlite+pysqlite:///{scratch.name}/hub.sqlite3"
        return Database(_sqlite_engine(sqlite_url), None, sqlite_url, scratch)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return Database(_sqlite_engine(url), None, url)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigurationError("HUB_DATABASE_URL: must be postgresql+psycopg://... or sqlite:///...")
    schema = schema_name(prefix)
    engine = sa.create_engine(
        parsed.set(drivername="postgresql+psycopg"), pool_size=5, max_overflow=10,
        connect_args={"options": f"-c search_path={schema}", "connect_timeout": 3},
    )
    _ping_when_idle(engine, ping_idle_s)
    return Database(engine, schema, url)


def _sqlite_engine(url: str) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def probe_database(url: str, *, timeout_s: float = 3.0) -> Exception | None:
    """None when the database at ``url`` answers, else the error."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return None
    engine = sa.create_engine(parsed.set(drivername="postgresql+psycopg"), poolclass=sa.pool.NullPool,
                              connect_args={"connect_timeout": max(int(timeout_s), 1)})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        return exc
    finally:
        engine.dispose()
    return None


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return mask_text(f"{type(original).__name__}: {text}".rstrip(": "))


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in ``url`` when it does not exist (True if created)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return False
    admin = sa.create_engine(parsed.set(drivername="postgresql+psycopg", database="postgres"),
                             poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            exists = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                        {"name": parsed.database}).first()
            if exists:
                return False
            quoted = admin.dialect.identifier_preparer.quote(parsed.database)
            with contextlib.suppress(DBAPIError):  # created meanwhile by another process
                connection.execute(sa.text(f"CREATE DATABASE {quoted}"))
                log.info("database created", database=parsed.database)
                return True
            return False
    finally:
        admin.dispose()


def upgrade(db: Database, locations: Sequence[Path]) -> None:
    """Bring the hub's tables to the newest version: the hub's migrations and those of ``locations`` (each a
    package's ``migrations`` folder), in the hub's schema. Safe to run from several processes at once."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations",
                           os.pathsep.join(str(p) for p in (MIGRATIONS / "versions", *locations)))
    try:
        with db._transaction() as connection:
            if db.schema is not None:
                # One migrator at a time per schema: a transaction-scoped advisory lock.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:schema))"),
                                   {"schema": db.schema})
                connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
                connection.execute(sa.text(f'SET LOCAL search_path TO "{db.schema}"'))
            config.attributes["connection"] = connection
            config.attributes["schema"] = db.schema
            before = _revisions(connection, db.schema)
            command.upgrade(config, "heads")
            after = _revisions(connection, db.schema)
    except OperationalError as exc:
        raise StoreUnavailable(f"database unavailable: {_reason(exc)}") from None
    if after != before:  # alembic's own lines (one per migration and its plugins) are heard at DEBUG only
        script = ScriptDirectory.from_config(config)
        applied = _up_to(script, after) - _up_to(script, before)
        log.info("database tables upgraded", schema=db.schema, applied=sorted(applied), revisions=sorted(after))


def _up_to(script: Any, heads: set[str]) -> set[str]:
    """Every revision up to ``heads``: the version table keeps only the newest of each branch."""
    return {revision.revision for revision in script.iterate_revisions(tuple(heads), "base")} if heads else set()


def _revisions(connection: Connection, schema: str | None) -> set[str]:
    """The revisions the database's version table holds (none before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return set(context.get_current_heads())


def drop_schema(db: Database) -> None:
    """Drop the hub's schema and everything in it (tests; a hub being removed)."""
    if db.schema is None:
        return
    with db._transaction() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE'))


def upsert(connection: Connection, table: sa.Table, values: Mapping[str, Any], *, keys: Sequence[str],
           update: Callable[[Any], Mapping[str, Any]] | None = None, returning: Any = None) -> Any:
    """Insert ``values`` into ``table``, or, when a row with the same ``keys`` exists, update it: with
    ``update(excluded)`` (``excluded``: the row that was refused), else every non-key column of ``values``.
    ``returning``: a column whose value in the row as it now stands is returned (``RETURNING``, in the same
    statement)."""
    statement = upsert_statement(connection.dialect.name, table, values, keys=keys, update=update,
                                 returning=returning)
    if returning is None:
        connection.execute(statement)
        return None
    return connection.execute(statement).scalar_one()


def upsert_statement(dialect: str, table: sa.Table, values: Mapping[str, Any], *, keys: Sequence[str],
                     update: Callable[[Any], Mapping[str, Any]] | None = None, returning: Any = None) -> Any:
    """:func:`upsert`'s statement, to build once and run many times when ``values`` are ``sa.bindparam`` s (a
    store on a hot path: the statement's construction costs more than its execution's Python side)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    changes = update(statement.excluded) if update is not None else \
        {column: statement.excluded[column] for column in values if column not in keys}
    upserting = statement.on_conflict_do_update(index_elements=list(keys), set_=dict(changes))
    return upserting if returning is None else upserting.returning(returning)


def insert_new(connection: Connection, table: sa.Table, values: Mapping[str, Any], *, keys: Sequence[str]) -> bool:
    """Insert ``values`` into ``table`` unless a row with the same ``keys`` exists; True if this call inserted
    it. Of two transactions inserting the same keys at once, one wins and the other waits for it to end, then
    inserts nothing: the loser reads the winner's row back instead of keeping a second one."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    # SQLAlchemy reports an INSERT's row count only when asked to keep it.
    result = connection.execute(statement, execution_options={"preserve_rowcount": True})
    return bool(result.rowcount == 1)
