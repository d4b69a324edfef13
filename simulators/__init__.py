"""Stand-ins for other companies' services: the ERP/PSA, SharePoint (Microsoft Graph) and DocuSign.

Each speaks its vendor's API subset and error shapes over real HTTP, with fault injection
(:mod:`simulators.kit`). :mod:`simulators.sandbox` runs them side by side for the demo and the tests.

Nothing here imports the hub's runtime (``hub``, ``actors``, ``connectors``, ``observability``):
a simulator stands for a system the hub does not own.
"""
