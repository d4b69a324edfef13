"""The hub's pool of PostgreSQL connections: a connection that sat in the pool is pinged before it is used again, one
in steady use is not (a round trip per transaction saved), and a server that went away under one in use costs that
work one retry; ``Database.autocommit`` commits each statement by itself. Real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from hub.db import Database, connect_database
from hub.errors import StoreUnavailable
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def opened(prefix: str) -> Iterator[Any]:
    """Opens a Database on the tests' PostgreSQL with the given idle time before a ping; each closed afterwards."""
    made: list[Database] = []

    def open_database(ping_idle_s: float) -> Database:
        database = connect_database(DATABASE_URL, prefix=prefix, embedded=False, ping_idle_s=ping_idle_s)
        made.append(database)
        return database

    yield open_database
    for database in made:
        database.close()


def backend(database: Database) -> int:
    with database.begin() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int) -> None:
    """The server ends that connection, as a restart or an idle timeout does (the server itself stays up)."""
    admin = sa.create_engine(DATABASE_URL, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
            connection.execute(sa.text(  # the backend is gone once the server no longer lists it
                f"DO $$ BEGIN WHILE EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {int(pid)}) LOOP "
                "PERFORM pg_sleep(0.01); END LOOP; END $$"))
    finally:
        admin.dispose()


def counting_pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pings the pool sends (SQLAlchemy's own ping, counted on its way)."""
    pings: list[int] = []
    ping = database.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(ping(dbapi_connection))

    monkeypatch.setattr(database.engine.dialect, "do_ping", counted)
    return pings


def test_a_connection_that_sat_in_the_pool_is_pinged_and_replaced_when_the_server_ended_it(
        opened: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    database = opened(0.0)  # every connection counts as idle
    pings = counting_pings(database, monkeypatch)
    first = backend(database)
    terminate(first)
    second = backend(database)  # no error: the ping found it dead and the pool made another
    assert second != first and len(pings) >= 2


def test_a_connection_in_steady_use_is_not_pinged_and_a_server_gone_under_it_costs_one_retry(
        opened: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    database = opened(3600.0)  # nothing is idle that long in this test
    pings = counting_pings(database, monkeypatch)
    first = backend(database)
    assert backend(database) == first and pings == []  # the same connection again, no round trip before it
    terminate(first)
    with pytest.raises(StoreUnavailable, match="database unavailable"):
        backend(database)  # what was under way when the server went away fails once, retryable
    assert backend(database) != first  # the pool replaced it


def test_autocommit_commits_each_statement_by_itself_and_a_transaction_all_or_nothing(opened: Any) -> None:
    database = opened(3600.0)
    table = sa.Table("pool_check", sa.MetaData(), sa.Column("n", sa.Integer, primary_key=True))
    with database.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        table.create(connection)
    with pytest.raises(RuntimeError), database.autocommit() as connection:
        connection.execute(table.insert().values(n=1))
        raise RuntimeError("after the statement")
    with pytest.raises(RuntimeError), database.begin() as connection:
        connection.execute(table.insert().values(n=2))
        raise RuntimeError("inside the transaction")
    with database.autocommit() as connection:
        assert connection.execute(sa.select(table.c.n)).scalars().all() == [1]
        assert connection.execute(sa.text("SELECT current_setting('transaction_isolation')")).scalar_one() \
            == "read committed"
    with database.begin() as connection:  # the pool gave the connection back as it was: in transactions again
        connection.execute(table.insert().values(n=3))
        assert connection.execute(sa.text("SELECT txid_current_if_assigned()")).scalar_one() is not None
