"""The thesis's networks: the A-F architectures as data, their builder, the augmentation warp.

- ``_architectures``: Tables 5.1-5.3 as a table, read by :func:`build_model`;
- ``_augment``: Section 5.2's augmentation as one batched affine warp (:class:`AffineAugment`);
- ``_training_model``: the network behind the warp, as the trainer fits it.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_architectures": ["ARCHITECTURES", "build_model", "trainable_parameters"],
        "_augment": ["AFFINE_SIZE", "draw_affine"],
        "_training_model": ["bare_network", "training_model"],
    },
)
