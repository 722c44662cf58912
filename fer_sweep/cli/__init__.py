"""The command line: argument parsing and exit codes, nothing else.

A :class:`~fer_sweep.errors.UserError` becomes one ``error: ...`` line on stderr and exit
code 2; anything else is a bug and keeps its traceback.

- ``_app``: the ``fer_sweep`` Typer app and :func:`main`;
- ``_train_commands``, ``_sweep_commands``, ``_result_commands``: the commands, by what
  they work on; ``_options``: the options they share and the settings they resolve;
- ``_run``: how a command line runs (:func:`run_app`, which ``benchmarks`` uses too).
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_app": ["app", "main"],
        "_options": ["DataOpt"],
        "_run": ["run_app"],
    },
)
