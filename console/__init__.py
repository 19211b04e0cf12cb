"""The console: what every command line prints and how it fails.

Modules: ``errors`` (the one error path, ``errors.run``: a fault a user can fix is one
``error:`` line and exit code 2; OS, TensorFlow and memory faults, Ctrl-C and SIGTERM likewise),
``progress`` (a bar in a terminal, plain lines in a log file), ``quiet`` (TensorFlow's start-up
noise silenced before it is imported: ``quiet.setup``, ``quiet.import_tf``). Imports nothing
of the project and no TensorFlow at import time; every other package may ask it.
"""
