"""The operator console: server-rendered pages (Jinja2) with htmx (2.0.4, 0BSD, vendored as
``static/htmx.min.js``) for the actions, served by the ingress under
``/console`` when an operators file is set.

Pages: the overview (dependencies, this process's throughput and errors, open exceptions by owner, held invoices
by code, dead letters by actor), the exception inbox by owner with acknowledge and resolve (and resolve with a
retry of the dead letters behind a case), the held invoices, the dead letters with their failure reasons and a
replay (confirmed first), an event's journey (its flight record, with a link to its trace when a trace UI is
configured) and the scheduled jobs' last runs.

It knows no pattern: what it shows and does comes through :class:`ConsoleData`, which the composition root
implements over the actors' stores. Sign-in, roles and CSRF: :mod:`hub.console.auth`.
"""

from hub.console.app import ConsoleData, console_router

__all__ = ["ConsoleData", "console_router"]
