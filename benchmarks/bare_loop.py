"""The default run's ten trainings as a bare PyTorch script: no harness, the yardstick.

The same work as ``expost run`` with the shipped default config, whose numbers
(epochs, learning rate, batch size, hidden width, seeds, ratio) are read from
``src/expost/experiments/default.yaml`` so the two never drift apart (digits,
70/20/10 split, an MLP, Adam, Weighted Training with the emphasised class and
unweighted training, one thread), and the same per-epoch evaluation: the log-probabilities
of the test set after every epoch, kept as float16 as the harness stores them, and of the
validation set (the harness's validation loss and its validation-selected Table 1).
Nothing is written, no metrics, no report. ``benchmarks/harness_vs_bare.py`` times
it beside the harness.

Run: ``python benchmarks/bare_loop.py [--fused-adam]`` (prints its wall and CPU seconds).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from sklearn.datasets import load_digits

_DEFAULT = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "src/expost/experiments/default.yaml").read_text())
SEEDS = int(_DEFAULT["seeds"])
EPOCHS = int(_DEFAULT["training"]["epochs"])
BATCH = int(_DEFAULT["training"]["batch_size"])
LR = float(_DEFAULT["optimizer"]["lr"])
(HIDDEN,) = _DEFAULT["model"]["options"]["hidden"]
RATIO = float(_DEFAULT["objective"]["ratio"])
EMPHASIZED = 8  # the class the default's "hardest" probe picks on digits (the report names it)


def split(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stratified 70/20/10 train/test/validation split."""
    rng = np.random.default_rng(seed)
    train, test, val = [], [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_train, n_test = round(0.7 * idx.size), round(0.2 * idx.size)
        train.append(idx[:n_train])
        test.append(idx[n_train:n_train + n_test])
        val.append(idx[n_train + n_test:])
    return np.concatenate(train), np.concatenate(test), np.concatenate(val)


def train(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, x_val: torch.Tensor,
          weights: torch.Tensor | None, seed: int, fused: bool) -> list[np.ndarray]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.ReLU(),
                                torch.nn.Linear(HIDDEN, 10))
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=fused or None)
    gen = torch.Generator().manual_seed(seed)
    stored = []
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(x.shape[0], generator=gen).split(BATCH):
            loss = F.cross_entropy(model(x[batch]), y[batch], reduction="none")
            if weights is not None:  # the paper's mean of w_y * CE (not a weighted mean)
                loss = loss * weights[y[batch]]
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            stored.append(F.log_softmax(model(x_test), dim=1).numpy().astype(np.float16))
            F.log_softmax(model(x_val), dim=1).numpy()
    return stored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fused-adam", action="store_true",
                    help="torch's fused Adam kernel, as the harness runs it by default "
                         "(optimizer.fused); without it the for-loop Adam, torch's CPU default")
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    torch.set_num_threads(1)
    data = load_digits()
    xs = (data.data / 16.0).astype(np.float32)
    tr, te, va = split(data.target)
    x, y = torch.from_numpy(xs[tr]), torch.from_numpy(data.target[tr]).long()
    x_test, x_val = torch.from_numpy(xs[te]), torch.from_numpy(xs[va])
    w = torch.ones(10)
    w[EMPHASIZED] = RATIO
    prior = torch.bincount(y, minlength=10).double() / y.numel()
    w = (w * (prior * -prior.log()).sum() / (prior * w * -prior.log()).sum()).float()  # Eq 21
    n = 0
    for seed in range(SEEDS):
        for weights in (w, None):
            n += len(train(x, y, x_test, x_val, weights, seed, args.fused_adam))
    print(f"bare loop: {SEEDS * 2} trainings, {n} test and validation evaluations, "
          f"wall {time.perf_counter() - t0:.2f} s, CPU {time.process_time() - c0:.2f} s")


if __name__ == "__main__":
    main()
