"""One way to build a trained model: ``build_model(config, checkpoint)``, used by every entry point.

``visualize.py``, ``deploy.py`` (and the inferencer) build the model of a training config and load a trained
file into it through :func:`build_model`; ``train.py`` leaves both to mmengine's Runner, whose loads go through
the same safe loader (:func:`multitask_vision.utils.checkpoint.install_safe_loading`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mmengine.config import Config

from multitask_vision.registry import MODELS
from multitask_vision.utils.checkpoint import load_weights, resolve_checkpoint
from multitask_vision.utils.config import normalize_config


def as_config(config: str | Path | Config | dict, cfg_options: dict | None = None) -> Config:
    """A config file (``.py``), a ``Config`` or a dict, with ``cfg_options`` merged into a copy and its accepted
    spellings translated (:func:`~multitask_vision.utils.config.normalize_config`)."""
    if isinstance(config, (str, Path)):
        if not Path(config).is_file():
            raise FileNotFoundError(f"config file not found: {config}")
        cfg = Config.fromfile(str(config))
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, dict):
        cfg = Config(copy.deepcopy(config))
    else:
        raise TypeError(f"config must be a file path, a Config or a dict, got {type(config).__name__}")
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    where = f" {config}" if isinstance(config, (str, Path)) else ""
    normalize_config(cfg, f"config{where}")  # accepted spellings -> ours (data=dict(datasets=...))
    if "model" not in cfg:
        raise ValueError(f"config{where} has no model")
    return cfg


def build_model(
    config: str | Path | Config | dict,
    checkpoint: str | Path | None = None,
    *,
    cfg_options: dict | None = None,
    device: str = "cpu",
) -> Any:
    """Build ``config``'s ``model`` and load ``checkpoint`` into it, strictly; returns it in eval mode.

    ``checkpoint`` may be a Runner checkpoint, a bare state dict, or a pruned model written by
    ``multitask_vision.compression.pruning.save_pruned`` (its layers are resized first), or a work dir (its last
    checkpoint: :func:`~multitask_vision.utils.checkpoint.resolve_checkpoint`). It is read by
    :func:`~multitask_vision.utils.checkpoint.load_checkpoint_file` (weights-only, allow-list); a file whose keys
    or shapes differ from the model is a ``ValueError`` of one line naming them, a missing file a
    ``FileNotFoundError``. Without a checkpoint the model keeps its initialisation (``init_weights`` is not
    called: that is the Runner's job). Entry points call ``multitask_vision.register_all_modules()`` once before.
    """
    cfg = as_config(config, cfg_options)
    if checkpoint is not None:
        checkpoint = resolve_checkpoint(checkpoint)  # a work dir: its last checkpoint
    model = MODELS.build(copy.deepcopy(cfg.model))
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.to(device).eval()
