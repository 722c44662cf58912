"""The one exception type for mistakes a user can make.

Anything a user can get wrong (a path, a CSV row, a YAML key, a ``--set`` value, a study
name) raises :class:`UserError` with a one-line message. The CLI prints that line and exits
with code 2; every other exception is a bug and keeps its traceback. Both mask secrets
(:func:`fer_sweep.redact.redact`): a URL's password never reaches a message.
"""

from fer_sweep.redact import redact


class UserError(Exception):
    """A problem with the user's input, described in one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Collapse newlines so the CLI's single-line contract holds whatever the caller wrote.
        super().__init__(" ".join(redact(message).split()))


def first_line(err: BaseException, limit: int = 200) -> str:
    """An error in one line for a report: the first line of its message, or the name of its
    type when the message is empty (``str(KeyError())`` is ``''``), its secrets masked."""
    lines = redact(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:limit]
