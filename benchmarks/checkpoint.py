"""Writing a training's checkpoint: each tensor pickled on its own against packed, side by side.

A checkpoint holds the model, the optimizer's moments, the generators' states and
the position of the training (``TrainingState.to_checkpoint``). Format 2 gave
``torch.save`` the nest as it is (some twenty pickled objects per tensor); format 3
(``checkpoint.pack_tensors``) packs every tensor under 256 KiB into one flat tensor
per dtype first. Printed for the default run's MLP and two larger models: milliseconds per
checkpoint serialised in memory (format 2, format 3 with its packing, and the
ratio), and the whole atomic write of format 3 to this machine's disk (temporary
file, fsync, rename), rounds interleaved.

Run: ``python benchmarks/checkpoint.py [--repeat 200]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from expost.experiments.checkpoint import (
    TrainingParts,
    TrainingState,
    pack_tensors,
    save_atomic,
)
from expost.experiments.models import build_model


def parts_of(model: torch.nn.Module, input_shape: tuple[int, ...]) -> TrainingParts:
    """The model with Adam's moments in place (one step taken)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, *input_shape)).sum().backward()
    optimizer.step()
    return TrainingParts(model, optimizer, None, torch.Generator().manual_seed(0))


def per_call(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median milliseconds per call of each function, run round-robin."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = {
        "default MLP (64-128-10)": (build_model("mlp", n_classes=10, input_shape=(64,),
                                                hidden=(128,)), (64,)),
        "MLP 784-512-256-10": (build_model("mlp", n_classes=10, input_shape=(784,),
                                           hidden=(512, 256)), (784,)),
        "CNN on 3x32x32": (build_model("cnn", n_classes=10, input_shape=(3, 32, 32)),
                           (3, 32, 32)),
    }
    print(f"{'model':<26}{'tensors':>8}{'MB':>7}{'format 2 ms':>13}{'format 3 ms':>13}"
          f"{'ratio':>7}{'atomic write ms':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, shape) in models.items():
            ck = TrainingState().to_checkpoint("k", parts_of(model, shape), torch.device("cpu"))
            tensors = list(_tensors(ck))
            n_tensors = len(tensors)
            mb = sum(t.numel() * t.element_size() for t in tensors) / 2**20
            path = Path(tmp) / "ckpt.pt"
            ms = per_call({
                "2": lambda ck=ck: torch.save(ck, io.BytesIO()),
                "3": lambda ck=ck: torch.save(pack_tensors(ck), io.BytesIO()),
                "disk": lambda ck=ck, path=path: save_atomic(ck, path),
            }, args.repeat)
            print(f"{name:<26}{n_tensors:>8}{mb:>7.2f}{ms['2']:>13.3f}{ms['3']:>13.3f}"
                  f"{ms['2'] / ms['3']:>7.2f}{ms['disk']:>17.3f}")


def _tensors(obj: object) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


if __name__ == "__main__":
    main()
