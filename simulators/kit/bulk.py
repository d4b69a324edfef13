"""What bulk seeding shares across simulators."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a bulk load allocates: the hundreds of thousands of records
    it makes would trigger full collections over everything the process holds (two thirds of a 100k-project seed's
    time). Reference counting still frees what is dropped; the collector runs again afterwards as before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
