"""Benchmarks and profiles of the hub on the real RabbitMQ and Redis (``make bench``, ``make profile``).

Every run uses its own queue and key prefix (``b<hex>``) and removes its queues and keys at the end.
Reports go to ``bench/results/`` (git-ignored), profiles to ``profile/``.
"""
