"""multitask-vision: one shared backbone, many task heads, several partially labelled datasets."""

__version__ = "0.1.0"


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module that registers something (models, datasets, metrics, hooks, compression steps),
    make mmengine load local checkpoints through our weights-only allow-list
    (:mod:`multitask_vision.utils.checkpoint`), and, with ``init_default_scope`` (as mmdet's function of the
    same name), make ``multitask_vision`` mmengine's default registry scope. Every entry point calls it once;
    ``train.py`` passes ``init_default_scope=False`` because the Runner sets the config's ``default_scope``."""
    import multitask_vision.compression  # noqa: F401
    import multitask_vision.datasets  # noqa: F401
    import multitask_vision.engine  # noqa: F401
    import multitask_vision.evaluation  # noqa: F401
    import multitask_vision.models  # noqa: F401
    import multitask_vision.visualization  # noqa: F401
    from multitask_vision.utils.checkpoint import install_safe_loading

    install_safe_loading()
    if init_default_scope:
        from mmengine.registry import init_default_scope as init_scope

        from multitask_vision.registry import SCOPE

        init_scope(SCOPE)
