"""The training config: one validated :class:`TrainConfig` per run, the presets, loading.

One :class:`TrainConfig` describes one training run completely, in the thesis's words: what a
sweep trial resolves to, what ``fer_sweep train --config`` reads, what MLflow logs as params,
and what a run is rebuilt from. :func:`validation_message` words any pydantic error (of the
config or of a sweep file) as one line.

- ``_train_config``: the config's fields, the thesis's presets, YAML files and ``--set``.
- ``_messages``: a validation error as one line, from the schema's own descriptions.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_messages": ["quote_key", "validation_message"],
        "_train_config": [
            "KNOWN_KEYS",
            "PRESETS",
            "TrainConfig",
            "load_config",
            "make_config",
            "spread",
        ],
    },
)
