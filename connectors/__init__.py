"""Per-system connectors: outbound clients and inbound adapters (the simulators live in ``simulators/``)."""
