"""The paper-table harness behind ``python reproduce.py``.

Modules: ``paper`` (the paper's numbers and dataset sizes, as plain data), ``plan`` (which
datasets can be tested or trained with what exists, and how long it would take), ``report``
(``REPRODUCTION.md`` / ``.json``: our numbers beside the paper's). Asks ``checkpointing``,
``inference`` and ``training`` for the work itself; see docs/reproduction.md.
"""
