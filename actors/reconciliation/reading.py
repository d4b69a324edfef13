"""Small readers the phases of a run share: records cut into pages, a drive item's path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

from connectors.sharepoint.models import DriveItem


def pages(records: Iterator[dict[str, Any]]) -> Callable[[int], Iterator[list[dict[str, Any]]]]:
    """``records`` cut into lists of ``size``."""
    def cut(size: int) -> Iterator[list[dict[str, Any]]]:
        page: list[dict[str, Any]] = []
        for record in records:
            page.append(record)
            if len(page) == size:
                yield page
                page = []
        if page:
            yield page
    return cut


def path_of(item: DriveItem) -> list[str]:
    """The item's path below the drive's root, as segments (``parentReference.path`` is ``/drives/ID/root:/A/B``)."""
    parent = item.parent_reference.path if item.parent_reference and item.parent_reference.path else ""
    below = unquote(parent.split("root:", 1)[1]) if "root:" in parent else ""
    return [part for part in below.split("/") if part] + [item.name]
