"""The errors a user can fix: the CLI prints them as one ``error:`` line and exits with 2.

``dataloader.DataError`` (unreadable or unmatched data) and ``utils.CheckpointError``
(missing or incompatible checkpoints) are the other two; ``USER_ERRORS`` lists all four.
"""


class UsageError(Exception):
    """Flags that cannot work together, or an output that cannot be written (one line)."""


class TrainingError(Exception):
    """Training had to stop (e.g. a NaN loss); the last good checkpoint is untouched."""


def user_errors():
    """The exception classes reported as ``error: <message>`` with exit code 2."""
    from dataloader import DataError
    from utils import CheckpointError
    return (UsageError, TrainingError, DataError, CheckpointError)
