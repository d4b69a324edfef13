"""Event fan-out: every canonical event on the topic exchange ``hub.events``."""

from actors.fanout.actor import SPEC, FanOut

__all__ = ["SPEC", "FanOut"]
