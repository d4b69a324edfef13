"""The crosswalk on the real Redis: minting is stable and atomic, lookups go both ways, merges and splits
keep lineage (and stay atomic under concurrency), and ``hub xref`` shows it all."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import redis
from click.testing import CliRunner, Result

from hub.cli import main
from hub.crosswalk import CrosswalkError, Identity, LineageEntry, RedisCrosswalk

pytestmark = pytest.mark.integration


def test_a_canonical_id_is_minted_once_and_resolves_both_ways(prefix: str) -> None:
    xref = RedisCrosswalk(redis.Redis(), prefix=prefix)
    first = xref.canonical("project", "erp", "ENG-ACME-0001")
    assert first.startswith("project_")
    assert xref.canonical("project", "erp", "ENG-ACME-0001") == first
    xref.link(first, "project", "sharepoint", "01WORKSPACE")
    assert xref.resolve("project", "sharepoint", "01WORKSPACE") == first
    assert xref.identities(first) == {"erp": "ENG-ACME-0001", "sharepoint": "01WORKSPACE"}
    assert xref.resolve("project", "erp", "unknown") is None


def test_concurrent_first_sightings_agree_on_one_canonical_id(prefix: str) -> None:
    xref = RedisCrosswalk(redis.Redis(), prefix=prefix)
    with ThreadPoolExecutor(max_workers=8) as pool:
        minted = set(pool.map(lambda _: xref.canonical("client", "erp", "C-ACME"), range(32)))
    assert len(minted) == 1


T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


@pytest.fixture
def xref(prefix: str) -> Iterator[RedisCrosswalk]:
    client = redis.Redis()
    yield RedisCrosswalk(client, prefix=prefix)
    client.close()


def two_clients(xref: RedisCrosswalk) -> tuple[str, str]:
    """Two ERP clients, each with a workspace, that will turn out to be one company."""
    first = xref.canonical("client", "erp", "C-ACME")
    xref.link(first, "client", "sharepoint", "SITE-ACME")
    second = xref.canonical("client", "erp", "C-ACME-GMBH")
    xref.link(second, "client", "crm", "CRM-77")
    return first, second


def test_a_merge_keeps_both_old_ids_resolvable_and_unions_their_identities(xref: RedisCrosswalk) -> None:
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


def test_a_merge_records_lineage_on_both_ids(xref: RedisCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate ERP client", at=T0)
    moved = (Identity("crm", "CRM-77"), Identity("erp", "C-ACME-GMBH"))
    assert xref.lineage(survivor) == [LineageEntry("merged_from", merged, "duplicate ERP client", T0, moved)]
    assert xref.lineage(merged) == [LineageEntry("merged_into", survivor, "duplicate ERP client", T0, moved)]


def test_merging_ids_that_are_already_one_entity_changes_nothing(xref: RedisCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate", at=T0)
    xref.merge("client", merged, survivor, reason="again, the other way round", at=T0)
    assert xref.resolve_canonical(merged) == survivor
    assert len(xref.lineage(survivor)) == 1


def test_a_merge_of_a_merged_id_follows_the_chain_to_the_live_survivor(xref: RedisCrosswalk) -> None:
    first, second = two_clients(xref)
    third = xref.canonical("client", "erp", "C-ACME-HOLDING")
    xref.merge("client", second, first, reason="ACME GmbH is the legal entity", at=T0)
    xref.merge("client", third, first, reason="the holding owns it all", at=T0)  # first is retired: second moves
    assert {xref.resolve_canonical(i) for i in (first, second, third)} == {third}
    assert [entry.other for entry in xref.lineage(first)] == [second]
    assert [entry.kind for entry in xref.lineage(second)] == ["merged_from", "merged_into"]
    assert xref.resolve("client", "sharepoint", "SITE-ACME") == third
    assert len(xref.all_identities(first)) == 5


def test_a_split_mints_a_new_id_and_moves_the_system_id_out_with_lineage(xref: RedisCrosswalk) -> None:
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


def test_splitting_out_a_primary_id_promotes_a_remaining_alias(xref: RedisCrosswalk) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate", at=T0)
    xref.split("client", survivor, "erp", "C-ACME", reason="wrong match", at=T0)
    assert xref.identities(survivor)["erp"] == "C-ACME-GMBH"


def test_merges_and_splits_refuse_unknown_foreign_or_mismatched_ids(xref: RedisCrosswalk) -> None:
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
    assert xref.resolve_canonical(merged) == merged and xref.lineage(survivor) == []


def test_concurrent_merges_collapse_into_exactly_one_survivor(xref: RedisCrosswalk) -> None:
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


def test_a_link_racing_a_merge_lands_on_the_survivor(xref: RedisCrosswalk) -> None:
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


def run_xref(monkeypatch: pytest.MonkeyPatch, prefix: str, query: str) -> Result:
    monkeypatch.setenv("HUB_QUEUE_PREFIX", prefix)
    monkeypatch.setenv("HUB_EMBEDDED", "off")
    return CliRunner().invoke(main, ["xref", query])


def test_hub_xref_shows_identities_resolution_and_lineage_from_a_system_id(
    xref: RedisCrosswalk, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    survivor = xref.canonical("project", "erp", "ENG-ACME-0001")
    xref.link(survivor, "project", "sharepoint", "01WORKSPACE")
    merged = xref.canonical("project", "erp", "ENG-ACME-0001-B")
    xref.merge("project", survivor, merged, reason="re-keyed in the ERP", at=T0)
    result = run_xref(monkeypatch, prefix, "project:erp:ENG-ACME-0001-B")
    assert result.exit_code == 0, result.output
    assert f"resolves to:  {survivor}" in result.output
    assert "erp         ENG-ACME-0001\n" in result.output
    assert "erp         ENG-ACME-0001-B  (alias)" in result.output
    assert "sharepoint  01WORKSPACE" in result.output
    assert f"2025-03-14T09:26:53.589Z  {survivor} merged_from {merged}" in result.output
    assert "reason: re-keyed in the ERP" in result.output


def test_hub_xref_from_a_merged_canonical_id_shows_the_path_to_the_survivor(
    xref: RedisCrosswalk, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    survivor, merged = two_clients(xref)
    xref.merge("client", survivor, merged, reason="duplicate ERP client", at=T0)
    result = run_xref(monkeypatch, prefix, merged)
    assert result.exit_code == 0, result.output
    assert f"canonical id: {merged} (merged)" in result.output
    assert f"via {merged} -> {survivor}" in result.output
    assert f"{merged} merged_into {survivor}" in result.output
    assert "crm         CRM-77" in result.output
    assert run_xref(monkeypatch, prefix, "sharepoint:SITE-ACME").output == run_xref(
        monkeypatch, prefix, "client:sharepoint:SITE-ACME").output.replace("client:sharepoint:", "sharepoint:")


@pytest.mark.parametrize("query", ["project_doesnotexist", "project:erp:NOPE", "erp:NOPE", ":"])
def test_hub_xref_fails_cleanly_on_an_unknown_id(
    xref: RedisCrosswalk, prefix: str, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    xref.canonical("project", "erp", "ENG-ACME-0001")
    result = run_xref(monkeypatch, prefix, query)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a clean click error, not a crash
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert "unknown canonical id" in result.output or "no entity has the identity" in result.output
