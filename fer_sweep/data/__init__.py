"""FER-2013 as arrays: its sources, their validation, the HDF5 cache, subsets.

Three source layouts are read, all to the same :class:`Dataset`: the Kaggle CSV
``emotion,pixels,Usage``, the same CSV gzipped, and the per-image folder release. Every
problem with the input raises :class:`~fer_sweep.errors.UserError` naming the file, the line
where there is one, and the problem. Example::

    ds = load_dataset("data/fer2013.csv.gz")
    x_train, y_train = ds.arrays("Training")
    small = stratified_subset(ds, 500, seed=1)

- ``_dataset``: the :class:`Dataset` and what each split is for;
- ``_load``: where the data is, and loading it through the cache (``_cache``);
- ``_csv`` and ``_folder``: the two source layouts and their validation;
- ``_subsets`` and ``_synthetic``: stratified subsets, and a synthetic set in the same schema.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_dataset": ["Dataset", "check_report", "require_splits"],
        "_load": ["load_dataset", "resolve_data_path"],
        "_subsets": ["stratified_subset"],
        "_synthetic": ["write_synthetic_csv"],
    },
)
