"""The ERP/PSA connector: the outbound client (``client.py``)."""
