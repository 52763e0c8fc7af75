"""The image cache: how fast it is built, and an epoch read from it against decoding PNGs.

Writes ``--n`` grayscale PNGs of ``--side`` x ``--side`` pixels (default 300 of
1024 x 1024, the size of ChestX-ray14's images; a smooth field plus noise, so
they compress like radiographs rather than like pure noise), then measures on
the same files:

- the cache build (:func:`expost.experiments.datasets.image_cache.build_cache`)
  with ``--workers`` processes and with one: images/s, and minutes per 10,000
  images extrapolated from the measured rate (linear: the build decodes each
  file once, independently);
- one epoch over the images as the training loop reads them, in batches of
  ``--batch`` in a shuffled order, resized to ``--image-size`` and normalised:
  from the PNG files (:class:`ImageFileDataset`, one process, as the harness
  reads per DataLoader worker) and from the cache (:class:`CachedImageDataset`).
  The cache is read right after it is built, so from the page cache (warm); a
  cold read adds the disk's time for ``n * image_size**2`` bytes (50 KB per
  image at 224 px).

Prints the rates and the ratio side by side, and the extrapolation to the
paper's ChestX-ray14 epoch (63,930 training + 27,394 evaluated images)::

    python benchmarks/image_cache.py [--n 300] [--side 1024] [--image-size 224] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from expost.experiments.datasets._base import IMAGENET_MEAN, IMAGENET_STD
from expost.experiments.datasets.image_cache import (
    CachedImageDataset,
    CacheSpec,
    ImageFileDataset,
    build_cache,
)

#: One ChestX-ray14 epoch of the paper's split: training images + validation and test.
CHEST_EPOCH = 63_930 + 27_394


def write_pngs(folder: Path, n: int, side: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        coarse = Image.fromarray(rng.integers(40, 220, (16, 16), dtype=np.uint8), mode="L")
        field = np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), np.float32)
        pixels = np.clip(field + rng.normal(0, 6, (side, side)), 0, 255).astype(np.uint8)
        path = folder / f"{k:08d}_000.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
    return paths


def epoch_seconds(dataset: torch.utils.data.Dataset, n: int, batch: int) -> float:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        idx = order[i:i + batch]
        if isinstance(dataset, CachedImageDataset):
            x, _ = dataset.get_batch(idx)
        else:
            x = torch.stack([dataset[int(j)][0] for j in idx])
        assert x.shape[0] == idx.numel()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dir", default=None, help="work folder, kept (default: a temporary one, "
                    "removed at the end)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.dir or tempfile.mkdtemp(prefix="expost-cache-bench-"))
    try:
        run(args, work)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    t0 = time.perf_counter()
    paths = write_pngs(work / "png", args.n, args.side)
    mb = sum(os.path.getsize(p) for p in paths) / len(paths) / 2**20
    print(f"{args.n} PNGs of {args.side} x {args.side} (mean {mb:.2f} MiB) written in "
          f"{time.perf_counter() - t0:.0f} s to {work}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")

    rates = {}
    for workers in dict.fromkeys([args.workers, 1]):
        spec = CacheSpec(tuple(paths), args.image_size, "L", work / f"cache-{workers}", "bench")
        t0 = time.perf_counter()
        array, built = build_cache(spec, workers=workers, stream=None)
        seconds = time.perf_counter() - t0
        assert built == args.n
        rates[workers] = args.n / seconds
    labels = np.zeros(args.n, dtype=np.int64)
    files = ImageFileDataset(paths, labels, image_size=args.image_size, mode="L",
                             mean=IMAGENET_MEAN, std=IMAGENET_STD)
    cached = CachedImageDataset(array, np.arange(args.n), labels, mean=IMAGENET_MEAN,
                                std=IMAGENET_STD)
    assert torch.equal(files.load(3), cached.load(3))  # the same pixels either way
    png_s = epoch_seconds(files, args.n, args.batch)
    cache_s = epoch_seconds(cached, args.n, args.batch)

    print(f"\ncache build ({args.image_size} px, uint8)       images/s   min per 10,000 images")
    for workers, rate in rates.items():
        print(f"  {workers} worker process(es){'':<14} {rate:>9.1f}   {10_000 / rate / 60:>8.1f}")
    print(f"\none epoch of {args.n} images, 1 process      ms/image   images/s   ratio")
    png_ms, cache_ms = 1000 * png_s / args.n, 1000 * cache_s / args.n
    print(f"  decoding the PNGs{'':<21} {png_ms:>8.2f}  {1000 / png_ms:>9.0f}   1.0")
    print(f"  reading the cache (warm){'':<14} {cache_ms:>8.2f}  {1000 / cache_ms:>9.0f}   "
          f"{png_ms / cache_ms:.0f}x faster")
    print(f"\nextrapolated (linear in images) to a ChestX-ray14 epoch of {CHEST_EPOCH:,} images, "
          f"one process: {CHEST_EPOCH * png_ms / 3.6e6:.2f} h from the PNGs, "
          f"{CHEST_EPOCH * cache_ms / 6e4:.1f} min from the cache; building the cache of "
          f"91,324 images: {91_324 / rates[args.workers] / 60:.0f} min with "
          f"{args.workers} worker(s).")


if __name__ == "__main__":
    main()
