"""The fault suite: the hub under load on private servers while they are stopped, killed and emptied, and while
the systems it calls fail; each scenario counts what was accepted, lost and done twice (``python -m chaos``).
A private cluster (``chaos.cluster``) does the same for a failed RabbitMQ node or Redis primary."""
