"""fer-sweep: Optuna sweeps over the VGG-style FER-2013 CNNs of a master's thesis.

What a notebook calls, in the order the data flows (each name lives in the subpackage that
owns it: :mod:`fer_sweep.data`, :mod:`fer_sweep.config`, :mod:`fer_sweep.training`,
:mod:`fer_sweep.search`, :mod:`fer_sweep.lifecycle`, :mod:`fer_sweep.reporting`)::

    import fer_sweep

    data = fer_sweep.load_dataset("data/fer2013.csv.gz")
    config = fer_sweep.load_config(preset="thesis-top2", epochs=2, subset=300)
    result = fer_sweep.train(config, data, workdir="runs/try")
    print(result.test_final.accuracy)

    settings = fer_sweep.Settings.resolve()  # mlruns/ and its SQLite stores by default
    spec = fer_sweep.load_sweep("dropout")  # sweeps/dropout.yaml
    fer_sweep.run_sweep(spec, settings, budget="smoke", data="data/fer2013.csv.gz")
    print(fer_sweep.render(fer_sweep.rank_trials(settings.storage, top=3)))

Importing the package loads nothing heavy: Keras (and so the backend), MLflow and Optuna
load on first use, after ``KERAS_BACKEND`` has been read.
"""

import lazy_loader as lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[
        "config",
        "data",
        "lifecycle",
        "model",
        "reporting",
        "search",
        "tracking",
        "training",
    ],
    submod_attrs={
        "errors": ["UserError"],
        "settings": ["Settings"],
        "data": ["load_dataset", "stratified_subset", "write_synthetic_csv"],
        "config": ["TrainConfig", "load_config"],
        "training": ["train"],
        "search": ["load_sweep", "make_plan", "render_plan"],
        "lifecycle": ["run_sweep"],
        "reporting": ["rank_trials", "render"],
    },
)
