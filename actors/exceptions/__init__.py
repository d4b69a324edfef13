"""Exceptions routed to their owners: every dead letter becomes ``hub.exception.raised.v1``, and every case raised
is kept in the exception inbox until it is resolved."""

from actors.exceptions.actor import INBOX_SPEC, SPEC, ExceptionRouter, InboxRecorder, exception_case
from actors.exceptions.store import MIGRATIONS, ExceptionInbox, MemoryExceptionInbox, SqlExceptionInbox

__all__ = ["INBOX_SPEC", "MIGRATIONS", "SPEC", "ExceptionInbox", "ExceptionRouter", "InboxRecorder",
           "MemoryExceptionInbox", "SqlExceptionInbox", "exception_case"]
