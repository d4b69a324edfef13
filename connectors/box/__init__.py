"""Box: webhook v2 adapter (inbound), client and simulator."""
