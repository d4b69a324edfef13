"""The crosswalk on the real Redis: minting is stable and atomic, lookups go both ways."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from hub.crosswalk import RedisCrosswalk

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
