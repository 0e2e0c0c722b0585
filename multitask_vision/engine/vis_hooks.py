"""Seeing training: prediction grids at every validation, and per-task loss / metric curves.

* :class:`MultiTaskVisualizationHook` draws the grids of :mod:`multitask_vision.visualization` for the first
  ``num_samples`` validation (or test) samples of every source, sends them to the Runner's visualizer
  (``add_image``: TensorBoard with ``TensorboardVisBackend``, ``vis_data/vis_image`` with
  ``LocalVisBackend``) and writes them to ``<work_dir>/vis/iter_<N>/<source>/<image>.png``.
* :class:`CurvesHook` plots every logged loss (grouped by task: ``detection.loss_cls`` -> detection) and every
  validation metric (``depth/abs_rel`` -> depth) over iterations into ``<work_dir>/curves.png``; its history
  travels in checkpoints (``meta['curves']``), so a resumed run continues its curves.

Scalars themselves reach TensorBoard through mmengine's ``LoggerHook`` and the visualizer's backends.
"""

from __future__ import annotations

import math
import os.path as osp
from typing import Any

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from multitask_vision.registry import HOOKS
from multitask_vision.structures import is_loss_key, split_loss_key


def _current_iter(runner) -> int:
    """``runner.iter`` without building a train loop that validation/test-only runs do not have."""
    loop = getattr(runner, "_train_loop", None)
    return 0 if loop is None or isinstance(loop, dict) else int(runner.iter)


@HOOKS.register_module()
class MultiTaskVisualizationHook(Hook):
    """Draw prediction grids for a few samples of every source at each validation (and test).

    Args:
        num_samples: samples per source per validation.
        out_dir: folder under the work dir for the PNGs (``None``: only the visualizer's backends get them).
        score_thr, panel_size: drawing options; default to the config's ``visualization`` dict, then 0.3/256.
    """

    priority = "NORMAL"

    def __init__(
        self,
        num_samples: int = 2,
        out_dir: str | None = "vis",
        score_thr: float | None = None,
        panel_size: int | None = None,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"MultiTaskVisualizationHook: num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.out_dir = out_dir
        self.options = {
            k: v for k, v in (("score_thr", score_thr), ("panel_size", panel_size)) if v is not None
        }
        self._renderers: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self.written: list[str] = []  # files of the last validation/test

    def _renderer(self, runner, mode: str):
        if mode not in self._renderers:
            from multitask_vision.visualization import GridRenderer, task_styles

            loader = runner.val_dataloader if mode == "val" else runner.test_dataloader
            vis_cfg = {**dict(runner.cfg.get("visualization") or {}), **self.options}
            self._renderers[mode] = GridRenderer.from_config(
                runner.model, vis_cfg, task_styles(loader.dataset)
            )
        return self._renderers[mode]

    def before_run(self, runner) -> None:
        """Check the config's ``visualization`` dict (keys, drawers of known tasks) before training starts."""
        from multitask_vision.visualization import GridRenderer

        GridRenderer.from_config(
            runner.model, {**dict(runner.cfg.get("visualization") or {}), **self.options}, {}
        )

    def before_val_epoch(self, runner) -> None:
        self._counts, self.written = {}, []

    def before_test_epoch(self, runner) -> None:
        self._counts, self.written = {}, []

    def after_val_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self._draw(runner, data_batch, "val")

    def after_test_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self._draw(runner, data_batch, "test")

    def _draw(self, runner, data_batch: Any, mode: str) -> None:
        if not is_main_process() or not data_batch or not data_batch.get("data_samples"):
            return
        samples = data_batch["data_samples"]
        pick = []
        for i, sample in enumerate(samples):
            source = str(sample.metainfo.get("source", ""))
            if self._counts.get(source, 0) < self.num_samples:
                self._counts[source] = self._counts.get(source, 0) + 1
                pick.append(i)
        if not pick:
            return
        import mmcv

        # the val step already wrote merged predictions into these samples; the renderer predicts per head
        # into fresh samples and reads only ground truth and metainfo from these
        batch = dict(inputs=[data_batch["inputs"][i] for i in pick], data_samples=[samples[i] for i in pick])
        step = _current_iter(runner)
        for grid in self._renderer(runner, mode).render(batch):
            assert grid.image is not None
            runner.visualizer.add_image(f"{mode}_{grid.source}_{grid.name}", grid.image, step=step)
            if self.out_dir is not None:
                tag = f"iter_{step}" if mode == "val" else "test"
                path = osp.join(runner.work_dir, self.out_dir, tag, grid.source, f"{grid.name}.png")
                mmcv.imwrite(grid.image[..., ::-1], path)  # RGB -> BGR
                self.written.append(path)


@HOOKS.register_module()
class CurvesHook(Hook):
    """Plot per-task training losses and validation metrics over iterations into ``<work_dir>/<filename>``.

    Args:
        interval: average the losses over this many iterations per point.
        filename: the PNG written after every validation and at the end of training.
    """

    priority = "BELOW_NORMAL"

    def __init__(self, interval: int = 10, filename: str = "curves.png") -> None:
        if interval < 1:
            raise ValueError(f"CurvesHook: interval must be >= 1, got {interval}")
        self.interval = interval
        self.filename = filename
        self.history: dict[str, list[list[float]]] = {}  # 'train/<loss>' or 'val/<metric>' -> [[iter, value]]
        self._window: dict[str, list[float]] = {}  # loss -> [sum, count] since the last point

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        for key, value in (outputs or {}).items():
            if is_loss_key(key):
                acc = self._window.setdefault(key, [0.0, 0.0])
                acc[0] += float(value.detach()) if hasattr(value, "detach") else float(value)
                acc[1] += 1
        if self.every_n_train_iters(runner, self.interval) or self.is_last_train_iter(runner):
            self._flush(runner.iter + 1)

    def _flush(self, step: int) -> None:
        for key, (total, count) in self._window.items():
            if count:
                self.history.setdefault(f"train/{key}", []).append([step, total / count])
        self._window = {}

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        step = _current_iter(runner)
        for key, value in (metrics or {}).items():
            try:  # numpy scalars of any precision, python numbers; skip non-scalars (e.g. per-class tables)
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                self.history.setdefault(f"val/{key}", []).append([step, number])
        if is_main_process():
            self.plot(osp.join(runner.work_dir, self.filename))

    def after_train(self, runner) -> None:
        self._flush(_current_iter(runner))
        if is_main_process():
            self.plot(osp.join(runner.work_dir, self.filename))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["curves"] = {
            k: [list(p) for p in v] for k, v in self.history.items()
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner.cfg.get("resume", False):  # continue this run's curves; a fine-tune (load_from) starts anew
            self.history = {
                k: [list(p) for p in v] for k, v in checkpoint.get("meta", {}).get("curves", {}).items()
            }

    def plot(self, path: str) -> str | None:
        """Write the curves: a row of loss panels (total, then per task) and a row of metric panels."""
        groups: dict[str, dict[str, dict[str, list]]] = {"train": {}, "val": {}}
        for key, points in self.history.items():
            mode, name = key.split("/", 1)
            if mode == "train":
                task, label = split_loss_key(name)
            else:  # metrics are '<task>/<metric>' (TaskMetric's prefix)
                task, sep, label = name.partition("/")
                task, label = (task, label) if sep else (None, name)
            groups[mode].setdefault(task or "total", {})[label] = points
        rows = [(mode, g) for mode, g in groups.items() if g]
        if not rows:
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        ncols = max(len(g) for _, g in rows)
        fig = Figure(figsize=(5.0 * ncols, 3.2 * len(rows)), dpi=100)
        FigureCanvasAgg(fig)
        for r, (mode, tasks) in enumerate(rows):
            for c, (task, series) in enumerate(sorted(tasks.items(), key=lambda kv: kv[0] != "total")):
                ax = fig.add_subplot(len(rows), ncols, r * ncols + c + 1)
                for label, points in sorted(series.items()):
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, "o-" if mode == "val" else "-", label=label, markersize=3, linewidth=1.2)
                values = [y for s in series.values() for _, y in s]
                if mode == "train" and min(values) > 0 and max(values) / min(values) > 20:
                    ax.set_yscale("log")  # losses spanning decades
                ax.set_title(f"{task} {'loss' if mode == 'train' else 'validation'}", fontsize=10)
                ax.set_xlabel("iteration", fontsize=8)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.tick_params(labelsize=7)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        fig.savefig(path)
        return path
