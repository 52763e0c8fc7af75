"""Throughput of the paper's models and of the image pipeline, side by side (issue 12).

1. Models on synthetic tensors, training (forward, backward, SGD step) and
   evaluation (no grad) images/s, with the harness's settings (channels last
   for convolutional nets on a GPU, TF32, bf16 autocast on a GPU):
   DenseNet-121 and ViT-B/16 at 224 px (need torchvision; on a CPU a few
   iterations of a small batch), and the small models of the registry (cnn,
   densenet_small, vit_tiny at 32 px). Goals on one H100-class GPU:
   DenseNet-121 >= 3,000 and ViT-B/16 >= 2,500 training images/s.
   On a CPU it also compares the evaluation batch sizes 128 and 1024 and the
   two memory layouts of the small CNN.
2. The CIFAR batch pipeline alone (512 images resized to 224 px, pad-4 crop
   and flip, or the Inception crop): the old harness path (batch built on the
   CPU, then copied) against the new one (uint8 images on the training device,
   batch built there), and one image at a time through a DataLoader, for
   reference. On a CPU the old and new paths run the same operations (the
   ratio is about 1); the gain is on a GPU.
3. PNG decode against the image cache: ``benchmarks/image_cache.py`` when it is
   there (skip with ``--skip-image-cache``).

Run: ``python benchmarks/throughput.py`` (``--device cuda``, ``--iters N``,
``--skip-large`` for the small models only). Timings on a loaded machine are
what they are: the script prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from expost.experiments.batches import autocast
from expost.experiments.datasets._base import ImageArrayDataset
from expost.experiments.models import build_model

GOALS = {"densenet121": 3000.0, "vit": 2500.0}  # training images/s on one H100-class GPU


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def model_throughput(name: str, options: dict[str, Any], shape: tuple[int, int, int],
                     batch: int, device: torch.device, *, iters: int, warmup: int,
                     eval_batch: int | None = None, channels_last: bool | None = None,
                     compile_model: bool = False) -> dict[str, float]:
    """Training and evaluation images/s of one registered model on random inputs."""
    torch.manual_seed(0)
    model = build_model(name, n_classes=10, input_shape=shape, **options).to(device)
    conv = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
    if channels_last is None:
        channels_last = device.type == "cuda" and conv
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)  # type: ignore[call-overload]
    forward = torch.compile(model) if compile_model else model
    precision = "bf16" if device.type == "cuda" else "fp32"
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with autocast(device, precision):
            logits = forward(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    train = batch / _timed(step, device, iters, warmup)
    eb = eval_batch or batch
    xe = torch.randn(eb, *shape, device=device).contiguous(memory_format=fmt)

    @torch.no_grad()
    def infer() -> None:
        with autocast(device, precision):
            forward(xe)

    model.eval()
    evaluation = eb / _timed(infer, device, iters, warmup)
    return {"train": train, "eval": evaluation}


def _cifar_like(n: int, device: torch.device, augment: bool | str, size: int
                ) -> ImageArrayDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
    return ImageArrayDataset(images, torch.zeros(n, dtype=torch.long), mean=(0.5,) * 3,
                             std=(0.5,) * 3, augment=augment, image_size=size)


def pipeline_throughput(device: torch.device, *, batch: int, size: int, augment: bool | str,
                        iters: int, warmup: int) -> dict[str, float]:
    """Images/s of building CIFAR batches: old path, new path, one image at a time."""
    ds = _cifar_like(8 * batch, device, augment, size)
    order = torch.randperm(len(ds))
    pos = [0]

    def next_idx() -> torch.Tensor:
        i = pos[0] % (len(ds) // batch)
        pos[0] += 1
        return order[i * batch:(i + 1) * batch]

    nb = device.type == "cuda"

    def old() -> None:  # before: built on the CPU, then copied (294 MiB per batch at 224 px)
        x, _ = ds.get_batch(next_idx())
        x.to(device, non_blocking=nb)

    placed = ds.to_device(device)

    def new() -> None:  # now: uint8 images on the device, batch built there
        placed.get_batch(next_idx(), device=device)

    out = {"old": batch / _timed(old, device, iters, warmup),
           "new": batch / _timed(new, device, iters, warmup)}
    items = _cifar_like(batch, device, augment, size)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(items, range(batch)), batch_size=batch)  # per-image __getitem__
    out["per_image"] = batch / _timed(lambda: next(iter(loader))[0].to(device), device,
                                      max(1, iters // 2), 0)
    return out


def _row(label: str, values: dict[str, float], goal: float | None = None) -> str:
    text = f"  {label:<40} train {values['train']:9.1f} img/s   eval {values['eval']:9.1f} img/s"
    if goal is not None:
        text += f"   goal {goal:,.0f}: {values['train'] / goal:5.2f} x"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed iterations (default 20 on a GPU, 3 on a CPU)")
    parser.add_argument("--skip-large", action="store_true", help="no DenseNet-121 / ViT-B/16")
    parser.add_argument("--skip-image-cache", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU, {torch.get_num_threads()} threads"
    iters = args.iters or (20 if gpu else 3)
    warmup = 5 if gpu else 1
    print(f"# throughput on {where} (torch {torch.__version__}), {iters} timed iterations")

    print("\n## models on synthetic tensors" + (" (bf16 autocast)" if gpu else " (fp32)"))
    large = importlib.util.find_spec("torchvision") is not None and not args.skip_large
    if large:
        batch = 256 if gpu else 8
        for name, opts in (("densenet121", {}), ("vit", {})):
            r = model_throughput(name, opts, (3, 224, 224), batch, device, iters=iters,
                                 warmup=warmup, compile_model=args.compile)
            label = {"densenet121": "DenseNet-121", "vit": "ViT-B/16"}[name]
            print(_row(f"{label} 224 px, batch {batch}", r, GOALS[name] if gpu else None))
    else:
        print("  DenseNet-121 / ViT-B/16: skipped (torchvision not importable or --skip-large)")
    small = (("cnn", {"channels": (32, 64)}), ("densenet_small", {}), ("vit_tiny", {}))
    batch = 512 if gpu else 128
    for name, opts in small:
        r = model_throughput(name, opts, (3, 32, 32), batch, device, iters=iters, warmup=warmup,
                             compile_model=args.compile)
        print(_row(f"{name} 32 px, batch {batch}", r))
    if not gpu:
        print("\n## CPU choices for the small CNN (32 px)")
        for fmt in (False, True):
            for eb in (128, 1024):
                r = model_throughput("cnn", {"channels": (32, 64)}, (3, 32, 32), 128, device,
                                     iters=iters, warmup=warmup, eval_batch=eb,
                                     channels_last=fmt)
                layout = "channels_last" if fmt else "contiguous"
                print(_row(f"{layout}, eval batch {eb}", r))

    print("\n## CIFAR batch pipeline alone (batch 512, 32 -> 224 px)")
    for augment in (True, "inception_crop"):
        r = pipeline_throughput(device, batch=512, size=224, augment=augment,
                                iters=iters, warmup=warmup)
        print(f"  augment={augment!s:<15} old (CPU, then copy) {r['old']:9.1f} img/s   "
              f"new (on {device.type}) {r['new']:9.1f} img/s   new/old {r['new'] / r['old']:6.2f}"
              f"   one image at a time {r['per_image']:8.1f} img/s")

    cache = Path(__file__).with_name("image_cache.py")
    if args.skip_image_cache:
        print("\n## image cache: skipped (--skip-image-cache)")
    elif cache.is_file():
        print("\n## PNG decode vs image cache (benchmarks/image_cache.py)", flush=True)
        subprocess.run([sys.executable, str(cache)], check=False)
    else:
        print("\n## image cache: benchmarks/image_cache.py is not there")


if __name__ == "__main__":
    main()
