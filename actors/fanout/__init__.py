"""Event fan-out: every canonical event on the topic exchange ``hub.events``."""

from actors.fanout.actor import SPEC, FanOut
from actors.fanout.walls import MIGRATIONS

__all__ = ["MIGRATIONS", "SPEC", "FanOut"]
