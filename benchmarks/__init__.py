"""Benchmarks of sqlstore against the Zoho SDK's own stores and raw drivers.

Run from the checkout: ``python -m benchmarks.run`` (or ``--quick`` for a
smoke run of a few seconds). See ``benchmarks/README.md``.
"""
