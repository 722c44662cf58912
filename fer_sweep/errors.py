"""The one exception type for mistakes a user can make.

Anything a user can get wrong (a path, a CSV row, a YAML key, a ``--set`` value, a study
name) raises :class:`UserError` with a one-line message. The CLI prints that line and exits
with code 2; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, described in one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Collapse newlines so the CLI's single-line contract holds whatever the caller wrote.
        super().__init__(" ".join(str(message).split()))
