"""Simulated SharePoint tenants for tests about one thing at a time."""

from __future__ import annotations

from typing import Any

#: A tenant as lenient as the Graph simulator can be: a drive's id is its name (``drives/workspaces``), the site
#: grants nothing of its own (an item's permissions are only those invited on it), and any field name is taken.
#: For tests of notifications, delta, transfers and errors; the strict defaults are tested on their own
#: (tests/test_sharepoint_sites.py, tests/test_graph_sdk_sites.py) and by every scenario.
BARE: dict[str, Any] = {"graph_ids": False, "site_groups": False, "columns": None}
