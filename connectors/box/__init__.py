"""Box: the webhook v2 adapter (inbound)."""
