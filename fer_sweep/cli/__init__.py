"""The command line: argument parsing and exit codes, nothing else.

A :class:`~fer_sweep.errors.UserError` becomes one ``error: ...`` line on stderr and exit
code 2; anything else is a bug and keeps its traceback. ``_app`` holds the commands, ``_run``
the way a command line is run.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_app": ["DataOpt", "app", "main"],
        "_run": ["run_app"],
    },
)
