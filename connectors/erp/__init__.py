"""The ERP/PSA connector: the outbound client (``client.py``) and the simulator standing for the ERP.

Nothing is imported here, so importing the simulator never loads the hub runtime.
"""
