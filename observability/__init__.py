"""Tracing, structured logging and the flight record of every business event."""
