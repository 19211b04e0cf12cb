"""The throughput benchmark's library behind ``python bench.py``: its phases (``phases``, each
run in its own process) and its results (``report``: the JSON fields, summaries and table).
Asks ``machine.profiling`` for the measurements, ``commands`` and ``deploy`` for the work it
times; see docs/performance.md and BENCHMARKS.md.
"""
