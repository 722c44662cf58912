"""The exception types, in one leaf module that anything may import without loading Keras.

Anything a user can get wrong (a path, a CSV row, a YAML key, a ``--set`` value, a study
name) raises :class:`UserError` with a one-line message. The CLI prints that line and exits
with code 2; every other exception is a bug and keeps its traceback. Both mask secrets
(:func:`fer_sweep.redact.redact`): a URL's password never reaches a message.

The trainer's own ends (:class:`TrainingDiverged`, :class:`TrainingInterrupted`) live here
too, so that :func:`fer_sweep.outcomes.outcome_of` names them without importing the trainer.
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


class Fault(UserError):
    """Something went wrong that is not a mistake in the command (a store that cannot be
    written, a sweep none of whose attempts completed): one line, exit code 1."""

    exit_code = 1


class StoreError(Fault):
    """A store or disk this command cannot use as it is (damaged, read-only, full), in one
    line naming the file and the cause."""


class StoppedOnRequest(Exception):  # noqa: N818 - a stop, not an error
    """A command stopped on request (Ctrl-C, SIGTERM) after saving its work: exit code 130."""


# What SQLite (through SQLAlchemy, Optuna or MLflow) and the OS say when a store is unusable,
# most telling first: each is the cause a user must hear, whatever wraps it.
STORE_CAUSES = (
    ("database or disk is full", "the disk is full"),
    ("no space left on device", "the disk is full"),
    ("disk quota exceeded", "the disk quota is exceeded"),
    ("readonly database", "it is read-only"),
    ("read-only file system", "it is read-only"),
    ("permission denied", "permission denied"),
    ("file is not a database", "it is damaged (not an SQLite database)"),
    ("database disk image is malformed", "it is damaged (malformed database image)"),
    ("unable to open database file", "it cannot be opened"),
)


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and every exception it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    while err is not None and all(err is not e for e in seen):
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def store_cause(err: BaseException) -> str | None:
    """Why a store could not be used, in a user's words, read from anywhere in ``err``'s chain
    (MLflow buries SQLite's "readonly database" under its own messages); None when nothing
    in it says the store itself is the problem."""
    import errno

    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        text = str(e).lower()
        for needle, cause in STORE_CAUSES:
            if needle in text:
                return cause
    return None


def store_error(what: str, url: str, err: BaseException) -> UserError:
    """The one line for a store that could not be opened or used: a :class:`StoreError`
    naming its file and the cause when the store itself is at fault (damaged, read-only,
    full), else "unreachable" with the first line of what was raised."""
    cause = store_cause(err)
    if cause is None:
        return UserError(f"{what} {url} is unreachable: {first_line(err)}")
    where = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return StoreError(f"{what} {where}: {cause}")


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) says the disk or its quota is full."""
    return store_cause(err) in ("the disk is full", "the disk quota is exceeded")


# --- how training ends early ------------------------------------------------------------


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """A stop was requested; the run was checkpointed at the end of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"stopped on request after epoch {epoch}")
        self.epoch = epoch
