"""Exceptions routed to their owners: every dead letter becomes ``hub.exception.raised.v1``."""

from actors.exceptions.actor import SPEC, ExceptionRouter, exception_case

__all__ = ["SPEC", "ExceptionRouter", "exception_case"]
