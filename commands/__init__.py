"""The commands behind ``python main.py``: the flags turned into training, testing, deraining
photos and exports (``run``). ``run_commands(args)`` is the package's interface: main.py calls
it inside ``errors.run``; bench.py and tools/ship_model.py call it to run a command as a user
would, without importing main.py. It asks ``training``, ``inference``, ``checkpointing`` and
``deploy`` for the work.
"""
from commands.run import run_commands

__all__ = ['run_commands']
