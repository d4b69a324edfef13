"""The hub runtime: settings, event contract, broker, dispatch, store and CLI (no pattern, no vendor)."""
