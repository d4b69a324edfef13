"""Per-system connectors: outbound clients, inbound adapters and simulators."""
