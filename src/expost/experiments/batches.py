"""The order of the training examples, batches on the device, whole-split predictions.

:class:`EpochSampler` draws each epoch's order of the training examples;
:class:`BatchSource` yields the ``(x, y)`` batches of a split in a given order
(an epoch's order, or the split's own order for inference);
:func:`predict_log_probs` runs a model over a whole split.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .checkpoint import TrainingState

__all__ = ["BatchSource", "EpochSampler", "autocast", "predict_log_probs"]

_DEVICE_COPY_LIMIT = 2 * 1024**3  # bytes: a TensorDataset smaller than this moves to the GPU


class EpochSampler:
    """Each epoch's order of the training examples, from a dedicated seeded generator.

    The order of the current epoch is drawn when the epoch starts; the
    generator's state at that moment is kept in the training state, so that a
    training resumed mid-epoch redraws the same order.

    >>> sampler = EpochSampler(lambda gen: torch.randperm(4, generator=gen), seed=0)
    >>> state = TrainingState()
    >>> first = sampler.epoch_order(state)
    >>> resumed = EpochSampler(sampler.draw, seed=1)
    >>> resumed.resume(TrainingState(pos=1, epoch_order_state=state.epoch_order_state))
    >>> torch.equal(resumed.epoch_order(state), first)
    True
    """

    def __init__(self, draw: Callable[[torch.Generator], torch.Tensor], seed: int) -> None:
        self.draw = draw
        self.generator = torch.Generator().manual_seed(seed)
        self._order: torch.Tensor | None = None

    def epoch_order(self, state: TrainingState) -> torch.Tensor:
        """The current epoch's order (drawn now, and its start state recorded, if new)."""
        if self._order is None:
            state.epoch_order_state = self.generator.get_state()
            self._order = self.draw(self.generator)
        return self._order

    def next_epoch(self) -> None:
        """Forget the order: the next epoch draws its own."""
        self._order = None

    def resume(self, state: TrainingState) -> None:
        """Redraw the order of an epoch that a restored state is in the middle of."""
        if state.pos > 0 and state.epoch_order_state is not None:
            self.generator.set_state(state.epoch_order_state)
            self._order = self.draw(self.generator)


class _Passes:
    """The batch sampler of a persistent :class:`~torch.utils.data.DataLoader`: the index
    batches of the current pass, set before each pass."""

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter([c.tolist() for c in self.chunks])

    def __len__(self) -> int:
        return len(self.chunks)


class BatchSource:
    """Batches of one split, with labels that may differ from the data set's (MetaCost).

    Four paths: a :class:`~torch.utils.data.TensorDataset` is indexed directly
    (moved to the GPU once when it fits); a data set with ``to_device`` (uint8
    images, :class:`~expost.experiments.datasets._base.ImageArrayDataset`) is
    placed on the device once and builds every batch there, augmentation and
    resize included (``get_batch(indices, device=...)``, on the CPU too); a
    data set with ``get_batch(indices)`` builds whole batches itself; anything
    else goes through one :class:`~torch.utils.data.DataLoader` over our own
    index batches, built on first use and kept (persistent workers when
    ``num_workers`` > 0) for the source's lifetime: one per training.

    Batches arrive on ``device`` (copied from pinned memory without blocking on
    a GPU), in ``memory_format`` (``torch.channels_last`` for convolutional nets).

    >>> ds = torch.utils.data.TensorDataset(torch.arange(5.0)[:, None], torch.zeros(5))
    >>> src = BatchSource(ds, np.array([0, 1, 0, 1, 1]), torch.device("cpu"))
    >>> [y.tolist() for _, y in src.batches(torch.tensor([4, 3, 0]), 2)]
    [[1, 1], [0]]
    """

    def __init__(self, dataset: Any, labels: NDArray[np.int64], device: torch.device, *,
                 num_workers: int = 0,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.dataset = dataset
        self.n = len(dataset)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.device = device
        self.num_workers = num_workers
        self.memory_format = memory_format
        self.x: torch.Tensor | None = None
        self.on_device = hasattr(dataset, "to_device")
        self._loader: torch.utils.data.DataLoader[Any] | None = None
        self._passes = _Passes()
        if self.on_device:
            self.dataset = dataset.to_device(device)
            self.labels = self.labels.to(device)
        elif isinstance(dataset, torch.utils.data.TensorDataset):
            x = dataset.tensors[0]
            if device.type != "cpu" and x.element_size() * x.nelement() < _DEVICE_COPY_LIMIT:
                x = x.to(device)
            self.x = x
            if x.device == device:
                self.labels = self.labels.to(device)

    @property
    def row_bytes(self) -> int | None:
        """Bytes of one input row of a split held in memory; None for one loaded batch by batch."""
        if self.x is None or self.x.ndim == 0 or self.x.shape[0] == 0:
            return None
        return int(self.x[0].nelement() * self.x.element_size())

    def without_augmentation(self) -> BatchSource:
        """The same split with the data set's ``augment`` flag off (for inference)."""
        if not getattr(self.dataset, "augment", False):
            return self
        ds = copy.copy(self.dataset)
        ds.augment = False
        return BatchSource(ds, self.labels.cpu().numpy(), self.device,
                           num_workers=self.num_workers, memory_format=self.memory_format)

    def batches(self, order: torch.Tensor, batch_size: int, *, loader_seed: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` on the device for consecutive slices of ``order`` (CPU int64 indices)."""
        chunks = [order[i:i + batch_size] for i in range(0, order.numel(), batch_size)]
        if self.x is not None:
            pairs = self._indexed(chunks)
        elif self.on_device:
            pairs = ((self.dataset.get_batch(idx, device=self.device)[0], self._label(idx))
                     for idx in chunks)
        elif hasattr(self.dataset, "get_batch"):
            pairs = ((self.dataset.get_batch(idx)[0], self.labels[idx]) for idx in chunks)
        else:
            pairs = self._loaded(chunks, loader_seed)
        gpu = self.device.type != "cpu"
        for x, y in pairs:
            yield self._to_device(x, gpu), y.to(self.device, non_blocking=gpu)

    def in_order(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The inputs of the whole split in order, ``batch_size`` at a time, on the device.

        The same batches as :meth:`batches` over ``arange(n)``; a split held in
        memory is sliced (views, no gather).
        """
        if self.x is None:
            for x, _ in self.batches(torch.arange(self.n), batch_size):
                yield x
            return
        gpu = self.device.type != "cpu"
        for start in range(0, self.n, batch_size):
            yield self._to_device(self.x[start:start + batch_size], gpu)

    def _to_device(self, x: torch.Tensor, gpu: bool) -> torch.Tensor:
        if gpu and x.device.type == "cpu" and not x.is_pinned():
            x = x.pin_memory()
        if x.ndim == 4:
            return x.to(self.device, non_blocking=gpu, memory_format=self.memory_format)
        return x.to(self.device, non_blocking=gpu)

    def _label(self, idx: torch.Tensor) -> torch.Tensor:
        return self.labels[idx.to(self.labels.device)]

    def _indexed(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.x is not None
        for idx in chunks:
            if self.x.device != idx.device:
                idx = idx.to(self.x.device)
            yield self.x[idx], self.labels[idx]

    def _loaded(self, chunks: list[torch.Tensor], loader_seed: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self._passes, num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
            )
        # the workers' base seed of this pass (drawn when the pass starts)
        self._loader.generator = torch.Generator().manual_seed(int(loader_seed))
        self._passes.chunks = chunks
        for idx, (x, _) in zip(chunks, self._loader, strict=True):
            yield x, self.labels[idx]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` for ``precision="bf16"``; nothing for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_log_probs(model: torch.nn.Module, source: BatchSource, *, batch_size: int,
                      precision: str = "fp32") -> NDArray[np.float32]:
    """``log_softmax`` of the model's logits on a whole split, in order, as float32 numpy.

    The model is put in eval mode (no dropout: evaluation consumes no random numbers).

    >>> ds = torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.zeros(3))
    >>> src = BatchSource(ds, np.zeros(3, dtype=np.int64), torch.device("cpu"))
    >>> predict_log_probs(torch.nn.Linear(2, 4, bias=False), src, batch_size=2).shape
    (3, 4)
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        for x in source.in_order(batch_size):
            with autocast(source.device, precision):
                logits = model(x)
            out.append(torch.log_softmax(logits.float(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()
