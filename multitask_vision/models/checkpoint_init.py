"""Start blocks from OpenMMLab (or any) checkpoints, the way users start from the mmdet/mmseg model zoos.

``MultiTaskModel(init_from=[dict(checkpoint='fcos_r50.pth', prefix_map={'backbone.': 'backbone.',
'neck.': 'neck.', 'bbox_head.': 'det_head.'})])`` loads, at ``init_weights()``, every checkpoint tensor whose
key starts with a source prefix into the block named by the target prefix, and reports what was missing
(block parameters the checkpoint did not provide), unexpected (checkpoint keys that map nowhere or to no
parameter) and mismatched in shape (skipped, never silently broadcast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from mmengine.logging import print_log
from torch import nn

from multitask_vision.utils.checkpoint import load_checkpoint_file, resolve_checkpoint, state_dict_of


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)

    def summary(self, checkpoint: str) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8})" if len(keys) > 8 else "")

        lines = [f"init_from {checkpoint}: loaded {len(self.loaded)} tensors"]
        for name in ("missing", "unexpected", "shape_mismatch"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"  {name} ({len(keys)}): {few(keys)}")
        return "\n".join(lines)


def load_block_weights(
    blocks: nn.ModuleDict, checkpoint: str, prefix_map: dict[str, str], strict: bool = False
) -> LoadReport:
    """Load ``checkpoint``'s tensors into ``blocks`` after renaming key prefixes by ``prefix_map``.

    ``prefix_map`` maps a checkpoint key prefix (``'bbox_head.'``) to a block name with an optional sub-path
    (``'det_head.'``). With ``strict=True`` anything missing, unexpected or mismatched is an error.
    """
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"init_from checkpoint not found: {checkpoint}")
    checkpoint = str(resolve_checkpoint(checkpoint))  # a work dir: its last checkpoint
    if not prefix_map:
        raise ValueError(f"init_from {checkpoint}: prefix_map is empty")
    for src, target_prefix in prefix_map.items():
        block = target_prefix.split(".", 1)[0]
        if block not in blocks:
            raise ValueError(
                f"init_from {checkpoint}: prefix_map[{src!r}] -> {target_prefix!r} names no block "
                f"(blocks: {list(blocks)})"
            )
    state = state_dict_of(load_checkpoint_file(checkpoint), checkpoint)

    own = blocks.state_dict()
    report = LoadReport()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = next((p for p in sorted(prefix_map, key=len, reverse=True) if key.startswith(p)), None)
        if match is None:
            report.unexpected.append(key)
            continue
        target = prefix_map[match] + key[len(match) :]
        if target not in own:
            report.unexpected.append(key)
        elif own[target].shape != value.shape:
            report.shape_mismatch.append(
                f"{key}: {tuple(value.shape)} vs {target}: {tuple(own[target].shape)}"
            )
        else:
            renamed[target] = value
            report.loaded.append(target)
    targets = tuple(prefix_map.values())
    report.missing = [k for k in own if k.startswith(targets) and k not in renamed]
    if strict and (report.missing or report.unexpected or report.shape_mismatch):
        raise ValueError(report.summary(checkpoint).replace("\n", ";"))
    blocks.load_state_dict(renamed, strict=False)
    print_log(report.summary(checkpoint), logger="current")
    return report
