"""The networks: the A-F architectures as data, their builder, ResNet-18, the augmentation.

- ``_architectures``: Tables 5.1-5.3 as a table, read by :func:`build_model`;
- ``_augment``: Section 5.2's augmentation as one batched affine warp (:class:`AffineAugment`);
- ``_resnet``: a CIFAR-style ResNet-18 (``arch: resnet18``), beyond the thesis;
- ``_mixing``: random erasing, mixup and cutmix, drawn on the host, beyond the thesis;
- ``_training_model``: the network behind the training-only augmentation, as the trainer fits it.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_augment": ["AFFINE_SIZE", "draw_affine"],
        "_mixing": ["draw_erasing", "draw_mixing", "erases", "mixed_labels", "mixes"],
        "_architectures": ["ARCHITECTURES", "build_model", "crop_origin", "trainable_parameters"],
        "_training_model": ["bare_network", "input_shapes", "training_model"],
    },
)
