"""The crosswalk in the hub's database, on PostgreSQL and on SQLite (the embedded mode's): minting is stable
and atomic, lookups go both ways, merges and splits keep lineage (and stay atomic under concurrency), it
outlives the process that wrote it, and ``hub xref`` shows it all."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from hub.cli import main
from hub.crosswalk import CrosswalkError, Identity, LineageEntry, SqlCrosswalk, crosswalk_identities, crosswalk_ids
from hub.db import Database, connect_database

pytestmark = pytest.mark.integration


@pytest.fixture
def xref(database: Database) -> SqlCrosswalk:
    return SqlCrosswalk(database)


def test_a_canonical_id_is_minted_once_and_resolves_both_ways(xref: SqlCrosswalk) -> None:
    first = xref.canonical("project", "erp", "ENG-ACME-0001")
    assert first.startswith("project_")
    assert xref.canonical("project", "erp", "ENG-ACME-0001") == first
    xref.link(first, "project", "sharepoint", "01WORKSPACE")
    assert xref.resolve("project", "sharepoint", "01WORKSPACE") == first
    assert xref.identities(first) == {"erp": "ENG-ACME-0001", "sharepoint": "01WORKSPACE"}
    assert xref.resolve("project", "erp", "unknown") is None
    assert xref.entity(first) == "project" and xref.lineage(first) == []
    assert xref.lookup("erp", "ENG-ACME-0001") == {"project": first}


def test_the_same_system_id_is_a_different_entity_per_kind(xref: SqlCrosswalk) -> None:
    client = xref.canonical("client", "erp", "ACME")
    project = xref.canonical("project", "erp", "ACME")
    assert client != project
    assert xref.lookup("erp", "ACME") == {"client": client, "project": project}


def test_threads_seeing_a_new_system_id_at_once_agree_on_one_canonical_id(
    xref: SqlCrosswalk, database: Database
) -> None:
    threads = 8
    start = threading.Barrier(threads)

    def first_sighting(system_id: str) -> str:
        start.wait()  # every thread asks at the same moment: none finds it, all try to mint it
        return xref.canonical("client", "erp", system_id)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for round_ in range(10):
            minted = set(pool.map(first_sighting, [f"C-NEW-{round_}"] * threads))
            assert len(minted) == 1, minted
            assert xref.resolve("client", "erp", f"C-NEW-{round_}") == minted.pop()
    with database.begin() as connection:
        ids = connection.execute(sa.select(sa.func.count()).select_from(crosswalk_ids)).scalar()
        identities = connection.execute(sa.select(sa.func.count()).select_from(crosswalk_identities)).scalar()
    assert ids == identities == 10  # the losers' ids were never kept


def test_the_crosswalk_outlives_the_process_that_wrote_it(xref: SqlCrosswalk, database: Database,
                                                         prefix: str) -> None:
    client = xref.canonical("client", "erp", "ACME")
    xref.link(client, "client", "sharepoint", "SITE-ACME")
    restarted = connect_database(database.url, prefix=prefix, embedded=False)  # another process, later
    try:
        again = SqlCrosswalk(restarted)
        assert again.canonical("client", "erp", "ACME") == client
        assert again.identities(client) == {"erp": "ACME", "sharepoint": "SITE-ACME"}
    finally:
        restarted.close()


T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


def two_clients(xref: SqlCrosswalk) -> tuple[str, str]:
    """Two ERP clients, each with a workspace, that will turn out to be one company."""
    first = xref.canonical("client", "erp", "C-ACME")
    xref.link(first, "client", "sharepoint", "SITE-ACME")
    second = xref.canonical("client", "erp", "C-ACME-GMBH")
    xref.link(second, "client", "crm", "CRM-77")
    return first, second


def test_a_merge_keeps_both_old_ids_resolvable_and_unions_their_identities(xref: SqlCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate ERP client", at=T0)
    assert xref.resolve_canonical(survivor) == survivor
    assert xref.resolve_canonical(merged) == survivor
    assert xref.resolve("client", "erp", "C-ACME-GMBH") == survivor
    assert xref.resolve("client", "crm", "CRM-77") == survivor
    everything = [Identity("crm", "CRM-77"), Identity("erp", "C-ACME"), Identity("erp", "C-ACME-GMBH"),
                  Identity("sharepoint", "SITE-ACME")]
    assert xref.all_identities(survivor) == xref.all_identities(merged) == everything
    # The survivor's own ERP id stays primary; the merged one's is an alias; a new system is added.
    assert xref.identities(merged) == {"erp": "C-ACME", "sharepoint": "SITE-ACME", "crm": "CRM-77"}
    assert xref.canonical("client", "erp", "C-ACME-GMBH") == survivor


def test_a_merge_records_lineage_on_both_ids(xref: SqlCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate ERP client", at=T0)
    moved = (Identity("crm", "CRM-77"), Identity("erp", "C-ACME-GMBH"))
    assert xref.lineage(survivor) == [LineageEntry("merged_from", merged, "duplicate ERP client", T0, moved)]
    assert xref.lineage(merged) == [LineageEntry("merged_into", survivor, "duplicate ERP client", T0, moved)]


def test_merging_ids_that_are_already_one_entity_changes_nothing(xref: SqlCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate", at=T0)
    xref.merge("client", merged, survivor, reason="again, the other way round", at=T0)
    assert xref.resolve_canonical(merged) == survivor
    assert len(xref.lineage(survivor)) == 1


def test_a_merge_of_a_merged_id_follows_the_chain_to_the_live_survivor(xref: SqlCrosswalk) -> None:
    first, second = two_clients(xref)
    third = xref.canonical("client", "erp", "C-ACME-HOLDING")
    xref.merge("client", second, first, reason="ACME GmbH is the legal entity", at=T0)
    xref.merge("client", third, first, reason="the holding owns it all", at=T0)  # first is retired: second moves
    assert {xref.resolve_canonical(i) for i in (first, second, third)} == {third}
    assert [entry.other for entry in xref.lineage(first)] == [second]
    assert [entry.kind for entry in xref.lineage(second)] == ["merged_from", "merged_into"]
    assert xref.resolve("client", "sharepoint", "SITE-ACME") == third
    assert len(xref.all_identities(first)) == 5


def test_a_split_mints_a_new_id_and_moves_the_system_id_out_with_lineage(xref: SqlCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate", at=T0)
    later = T0 + timedelta(days=3)
    fresh = xref.split("client", merged, "erp", "C-ACME-GMBH", reason="separate legal entity after all", at=later)
    assert fresh.startswith("client_") and fresh not in (survivor, merged)
    assert xref.resolve("client", "erp", "C-ACME-GMBH") == fresh
    assert xref.identities(fresh) == {"erp": "C-ACME-GMBH"}
    assert Identity("erp", "C-ACME-GMBH") not in xref.all_identities(survivor)
    assert xref.identities(survivor)["erp"] == "C-ACME"
    moved = (Identity("erp", "C-ACME-GMBH"),)
    assert xref.lineage(survivor)[-1] == LineageEntry("split_to", fresh, "separate legal entity after all", later,
                                                      moved)
    assert xref.lineage(fresh) == [LineageEntry("split_from", survivor, "separate legal entity after all", later,
                                                moved)]


def test_splitting_out_a_primary_id_promotes_a_remaining_alias(xref: SqlCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate", at=T0)
    xref.split("client", survivor, "erp", "C-ACME", reason="wrong match", at=T0)
    assert xref.identities(survivor)["erp"] == "C-ACME-GMBH"


def test_merges_and_splits_refuse_unknown_foreign_or_mismatched_ids(xref: SqlCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    project = xref.canonical("project", "erp", "ENG-ACME-0001")
    with pytest.raises(CrosswalkError, match="unknown canonical id 'client_nowhere'"):
        xref.merge("client", survivor, "client_nowhere", reason="typo", at=T0)
    with pytest.raises(CrosswalkError, match="is a project, not a client"):
        xref.merge("client", survivor, project, reason="wrong kind", at=T0)
    with pytest.raises(CrosswalkError, match="erp:C-ACME-GMBH is not an identity of"):
        xref.split("client", survivor, "erp", "C-ACME-GMBH", reason="not ours", at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        xref.merge("client", survivor, merged, reason="naive", at=datetime(2025, 3, 14))
    with pytest.raises(CrosswalkError, match="unknown canonical id 'client_nowhere'"):
        xref.link("client_nowhere", "client", "crm", "CRM-1")  # the hub mints canonical ids, callers do not
    with pytest.raises(CrosswalkError, match="is a project, not a client"):
        xref.link(project, "client", "crm", "CRM-1")
    assert xref.resolve("client", "crm", "CRM-1") is None
    assert xref.resolve_canonical(merged) == merged and xref.lineage(survivor) == []


def test_concurrent_merges_collapse_into_exactly_one_survivor(xref: SqlCrosswalk) -> None:
    ids = [xref.canonical("client", "erp", f"C-{n}") for n in range(24)]
    pairs = [(ids[n], ids[n + 1]) for n in range(23)] + [(ids[n + 1], ids[0]) for n in range(23)]
    random.Random(7).shuffle(pairs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda pair: xref.merge("client", *pair, reason="dedupe run", at=T0), pairs))
    survivors = {xref.resolve_canonical(i) for i in ids}
    assert len(survivors) == 1
    survivor = survivors.pop()
    assert survivor is not None
    assert {xref.resolve("client", "erp", f"C-{n}") for n in range(24)} == {survivor}
    assert len(xref.all_identities(ids[5])) == 24
    kinds = [entry.kind for i in ids for entry in xref.lineage(i)]
    assert kinds.count("merged_into") == kinds.count("merged_from") == 23  # one real merge per retired id
    assert all(entry.kind != "merged_into" for entry in xref.lineage(survivor))


def test_a_link_racing_a_merge_lands_on_the_survivor(xref: SqlCrosswalk) -> None:
    def mint_repeatedly(system_id: str) -> list[str]:
        return [xref.canonical("project", "erp", system_id) for _ in range(5)]

    for round_ in range(20):
        survivor = xref.canonical("project", "erp", f"ENG-{round_}")
        merged = xref.canonical("project", "erp", f"ENG-{round_}-DUP")
        with ThreadPoolExecutor(max_workers=3) as pool:
            linked = pool.submit(xref.link, merged, "project", "sharepoint", f"SITE-{round_}")
            minted = pool.submit(mint_repeatedly, f"ENG-{round_}-DUP")
            pool.submit(xref.merge, "project", survivor, merged, reason="dup", at=T0).result()
            linked.result()
            assert set(minted.result()) <= {survivor, merged}
        assert xref.resolve("project", "sharepoint", f"SITE-{round_}") == survivor
        assert Identity("sharepoint", f"SITE-{round_}") in xref.all_identities(survivor)
        assert xref.canonical("project", "erp", f"ENG-{round_}-DUP") == survivor


def run_xref(monkeypatch: pytest.MonkeyPatch, prefix: str, database: Database, query: str) -> Result:
    monkeypatch.setenv("HUB_QUEUE_PREFIX", prefix)
    monkeypatch.setenv("HUB_DATABASE_URL", database.url)
    monkeypatch.setenv("HUB_EMBEDDED", "off")
    return CliRunner().invoke(main, ["xref", query])


def test_hub_xref_shows_identities_resolution_and_lineage_from_a_system_id(
    xref: SqlCrosswalk, database: Database, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    survivor = xref.canonical("project", "erp", "ENG-ACME-0001")
    xref.link(survivor, "project", "sharepoint", "01WORKSPACE")
    merged = xref.canonical("project", "erp", "ENG-ACME-0001-B")
    xref.merge("project", survivor, merged, reason="re-keyed in the ERP", at=T0)
    result = run_xref(monkeypatch, prefix, database, "project:erp:ENG-ACME-0001-B")
    assert result.exit_code == 0, result.output
    assert f"resolves to:  {survivor}" in result.output
    assert "erp         ENG-ACME-0001\n" in result.output
    assert "erp         ENG-ACME-0001-B  (alias)" in result.output
    assert "sharepoint  01WORKSPACE" in result.output
    assert f"2025-03-14T09:26:53.589Z  {survivor} merged_from {merged}" in result.output
    assert "reason: re-keyed in the ERP" in result.output


def test_hub_xref_from_a_merged_canonical_id_shows_the_path_to_the_survivor(
    xref: SqlCrosswalk, database: Database, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate ERP client", at=T0)
    result = run_xref(monkeypatch, prefix, database, merged)
    assert result.exit_code == 0, result.output
    assert f"canonical id: {merged} (merged)" in result.output
    assert f"via {merged} -> {survivor}" in result.output
    assert f"{merged} merged_into {survivor}" in result.output
    assert "crm         CRM-77" in result.output
    short = run_xref(monkeypatch, prefix, database, "sharepoint:SITE-ACME").output
    named = run_xref(monkeypatch, prefix, database, "client:sharepoint:SITE-ACME").output
    assert short == named.replace("client:sharepoint:", "sharepoint:")


@pytest.mark.parametrize("query", ["project_doesnotexist", "project:erp:NOPE", "erp:NOPE", ":"])
def test_hub_xref_fails_cleanly_on_an_unknown_id(
    xref: SqlCrosswalk, database: Database, prefix: str, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    xref.canonical("project", "erp", "ENG-ACME-0001")
    result = run_xref(monkeypatch, prefix, database, query)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a clean click error, not a crash
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert "unknown canonical id" in result.output or "no entity has the identity" in result.output
