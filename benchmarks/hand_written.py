"""The benchmarked models written by hand: plain PyTorch calling the framework model's own modules (same
weights) and the heads' ``loss`` / ``predict`` directly, as a team would without the framework.

What the framework adds over these is its graph routing (blocks in topological order through adapters, inputs
gathered by name), the per-task routing of samples, the task weighting and the fp32 guard of the head losses;
the hand-written models do the same work with none of that machinery. Under autocast they compute the head
losses in fp32 as the framework does (``fp32_head_losses``), so that both run the same kernels.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from torch import Tensor, nn


def _labelled(samples: list, task: str) -> list[int]:
    return [i for i, s in enumerate(samples) if task in s.metainfo.get("tasks", ())]


def _fp32(x: Tensor):
    """The head-loss precision: autocast off (and float inputs) when it is on."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def _loss_sum(losses: dict) -> Tensor:
    return sum(sum(v) if isinstance(v, (list, tuple)) else v for k, v in losses.items() if "loss" in k)  # type: ignore[return-value]


class HandWritten(nn.Module):
    """Base: a subclass gives ``features(x)`` (``{name: list of levels}``, what the heads read) and ``heads``:
    ``(module, task, features name, loss, predict)`` where ``loss(module, levels, samples)`` returns the head's
    loss dict and ``predict(module, levels, samples)`` writes its predictions into the samples."""

    heads: list[tuple[nn.Module, str, str, Any, Any]]

    def features(self, x: Tensor) -> dict[str, list[Tensor]]:
        raise NotImplementedError

    def loss(self, x: Tensor, samples: list) -> Tensor:
        feats = self.features(x)
        total = x.new_zeros(())
        for head, task, key, loss, _ in self.heads:
            idx = _labelled(samples, task)
            if not idx:
                continue
            fs, ss = feats[key], samples
            if len(idx) < len(samples):
                fs, ss = [f[idx] for f in fs], [samples[i] for i in idx]
            with _fp32(x):
                total = total + _loss_sum(loss(head, [f.float() for f in fs], ss))
        return total

    @torch.no_grad()
    def predict(self, x: Tensor, samples: list) -> list:
        feats = self.features(x)
        for head, _, key, _, predict in self.heads:
            predict(head, feats[key], samples)
        return samples


def _native_loss(head, feats, samples):
    return head.loss(feats, samples)


def _native_predict(head, feats, samples):
    head.predict(feats, samples)


def _mmdet_loss(head, feats, samples):
    return head.loss(tuple(feats), samples)


def _mmdet_predict(head, feats, samples):
    for sample, result in zip(samples, head.predict(tuple(feats), samples, rescale=True)):
        sample.pred_instances = result


def _mmseg_loss(head, feats, samples):
    return head.loss(list(feats), samples, ConfigDict())


def _mmseg_predict(head, feats, samples):
    """mmseg's decode-head prediction and EncoderDecoder's post-processing (crop padding, resize, argmax)."""
    logits = head.predict(list(feats), [s.metainfo for s in samples], ConfigDict())
    for i, sample in enumerate(samples):
        h, w = sample.metainfo["img_shape"][:2]
        one = F.interpolate(
            logits[i : i + 1, :, :h, :w],
            size=sample.metainfo["ori_shape"][:2],
            mode="bilinear",
            align_corners=head.align_corners,
        )[0]
        sample.seg_logits = PixelData(data=one)
        sample.pred_sem_seg = PixelData(data=one.argmax(dim=0, keepdim=True))


NATIVE = (_native_loss, _native_predict)
MMDET = (_mmdet_loss, _mmdet_predict)
MMSEG = (_mmseg_loss, _mmseg_predict)


class QuickstartByHand(HandWritten):
    """configs/quickstart.py: ResNet-18 (layer2..4) -> FPN -> detection, segmentation, depth on every level."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        b = model.blocks
        self.backbone, self.neck = b["backbone"], b["neck"]
        self.heads = [
            (b["det_head"], "detection", "neck", *NATIVE),
            (b["seg_head"], "segmentation", "neck", *NATIVE),
            (b["depth_head"], "depth", "neck", *NATIVE),
        ]

    def features(self, x):
        f = self.backbone(x)
        return {"neck": list(self.neck((f["layer2"], f["layer3"], f["layer4"])))}


class MMLabByHand(HandWritten):
    """configs/det_seg_depth_mmlab.py: mmdet ResNet-18 -> mmdet FPN -> mmdet FCOSHead and our DepthHead;
    mmseg FCNHead on the backbone's levels (it picks level 1)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        b = model.blocks
        self.backbone, self.neck = b["backbone"], b["neck"]
        self.heads = [
            (b["det_head"], "detection", "neck", *MMDET),
            (b["seg_head"], "segmentation", "backbone", *MMSEG),
            (b["depth_head"], "depth", "neck", *NATIVE),
        ]

    def features(self, x):
        levels = self.backbone(x)
        return {"backbone": list(levels), "neck": list(self.neck(levels[1:]))}


class HydraNetByHand(HandWritten):
    """configs/hydranet_nyu.py: MobileNetV2 (stride 4..32) -> RefineNet decoder -> segmentation and depth."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        b = model.blocks
        self.encoder, self.decoder = b["encoder"], b["decoder"]
        self.heads = [
            (b["seg_head"], "segmentation", "decoder", *NATIVE),
            (b["depth_head"], "depth", "decoder", *NATIVE),
        ]

    def features(self, x):
        f = self.encoder(x)
        return {"decoder": [self.decoder((f["stride4"], f["stride8"], f["stride16"], f["stride32"]))]}


BY_HAND = {"quickstart": QuickstartByHand, "mmlab": MMLabByHand, "hydranet": HydraNetByHand}
