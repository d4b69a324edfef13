"""Avro schemas of the hub's events, one named type per ``.avsc`` file (shipped as package data)."""
