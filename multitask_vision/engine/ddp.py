"""Distributed training through the model's own train step."""

from __future__ import annotations

from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


# registered in mmengine's root registry: Runner.wrap_model looks the type up with MODEL_WRAPPERS.get, which does
# not search the default scope's child registry
@MODEL_WRAPPERS.register_module()
class MultiTaskDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper, except that a training step is the model's
    (:meth:`~multitask_vision.models.multitask_model.MultiTaskModel.train_step`: non-finite steps skipped, the
    same ones on every process), run through this wrapper's forward so that gradients are synchronised.
    mmengine's own wrapper calls the optimizer itself and never reaches the model's ``train_step``."""

    def train_step(self, data, optim_wrapper):
        return self.module.train_step(data, optim_wrapper, ddp=self)
