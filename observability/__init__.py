"""Tracing, structured logging, flight record and metrics for the hub."""
