"""multitask-vision: one shared backbone, many task heads, several partially labelled datasets."""

__version__ = "0.1.0"


def register_all_modules() -> None:
    """Import every module that registers something (models, datasets, metrics, hooks), and make mmengine load
    local checkpoints through our weights-only allow-list (:mod:`multitask_vision.utils.checkpoint`)."""
    import multitask_vision.compression  # noqa: F401
    import multitask_vision.datasets  # noqa: F401
    import multitask_vision.engine  # noqa: F401
    import multitask_vision.evaluation  # noqa: F401
    import multitask_vision.models  # noqa: F401
    import multitask_vision.visualization  # noqa: F401
    from multitask_vision.utils.checkpoint import install_safe_loading

    install_safe_loading()
