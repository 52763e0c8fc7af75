"""The one-time image cache: round trip, staleness, a kill during the build and the resume."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from expost.experiments.datasets import load_dataset
from expost.experiments.datasets.image_cache import (
    CACHE_ENV,
    CachedImageDataset,
    CacheSpec,
    ImageFileDataset,
    build_cache,
    cache_folder,
    cache_status,
    decode_resized,
    ensure_cache,
    open_cache,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def _images(folder: Path, n: int, *, size: tuple[int, int] = (40, 30), mode: str = "L",
            seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        path = folder / f"{k:05d}.png"
        Image.fromarray(pixels, mode=mode).save(path)
        paths.append(str(path))
    return paths


def _reference(paths: list[str], size: int, mode: str) -> np.ndarray:
    """What the cache must hold: Pillow's decode, convert and bilinear resize of each file."""
    out = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
        out.append(arr.reshape(size, size, -1))
    return np.stack(out)


@pytest.mark.parametrize(("mode", "workers"), [("L", 1), ("RGB", 2)])
def test_round_trip_bytes_equal_the_decoded_resized_images(tmp_path, mode, workers):
    paths = _images(tmp_path / "img", 37, mode=mode)
    spec = CacheSpec(tuple(paths), 16, mode, tmp_path / "cache", "t")
    array, built = build_cache(spec, workers=workers, chunk=5, stream=None)
    assert built == 37 and array.dtype == np.uint8 and array.shape == spec.shape
    np.testing.assert_array_equal(np.asarray(array), _reference(paths, 16, mode))
    # plain .npy files: readable without pickle, the mask all done, the manifest complete
    files = spec.files()
    assert np.load(files["npy"], allow_pickle=False).shape == (37, 16, 16, 1 if mode == "L" else 3)
    assert np.load(files["done"], allow_pickle=False).all()
    manifest = json.loads(files["manifest"].read_text())
    assert manifest["complete"] and manifest["key"] == spec.key() and manifest["size"] == 16
    # a second call reads it back and decodes nothing
    again, built = ensure_cache(spec, stream=None)
    assert built == 0
    np.testing.assert_array_equal(np.asarray(again), np.asarray(array))
    # the memmap is copy-on-write: a write through it never reaches the file
    again[0] = 0
    np.testing.assert_array_equal(np.asarray(open_cache(spec)[0]), _reference(paths[:1], 16, mode)[0])


def test_cached_dataset_equals_the_file_dataset_bit_for_bit(tmp_path):
    paths = _images(tmp_path / "img", 12, mode="L")
    spec = CacheSpec(tuple(paths), 20, "L", tmp_path / "c")
    array, _ = build_cache(spec, workers=1, stream=None)
    rows = np.array([3, 0, 7, 11], dtype=np.int64)
    labels = np.array([1, 0, 1, 0], dtype=np.int64)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    cached = CachedImageDataset(array, rows, labels, mean=mean, std=std)
    files = ImageFileDataset([paths[r] for r in rows], labels, image_size=20, mode="L",
                             mean=mean, std=std)
    x, y = cached.get_batch([0, 1, 2, 3])
    assert x.shape == (4, 3, 20, 20) and y.tolist() == labels.tolist()
    for i in range(4):
        assert torch.equal(x[i], files.load(i))
        assert torch.equal(cached.load(i), files[i][0])
    # pickled for a worker process: the file's name travels, not the images
    blob = pickle.dumps(cached)
    assert len(blob) < array.nbytes
    clone = pickle.loads(blob)
    assert torch.equal(clone.get_batch([0, 1, 2, 3])[0], x)
    # a flip on the training split: each image or its mirror, both seen
    cached.augment = True
    seen = set()
    for s in range(20):
        torch.manual_seed(s)
        xt, _ = cached.get_batch([0])
        seen.add("same" if torch.equal(xt[0], x[0]) else
                 "flipped" if torch.equal(xt[0], x[0].flip(-1)) else "other")
    assert seen == {"same", "flipped"}


def test_a_changed_file_or_size_is_a_new_cache(tmp_path):
    paths = _images(tmp_path / "img", 6)
    spec = CacheSpec(tuple(paths), 8, "L", tmp_path / "c")
    build_cache(spec, workers=1, stream=None)
    key = spec.key()
    assert cache_status(spec)["complete"]
    # rewrite one image with other pixels: its size or mtime changes, so the key does
    time.sleep(0.01)
    Image.fromarray(np.full((30, 40), 7, np.uint8), mode="L").save(paths[2])
    os.utime(paths[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert spec.key() != key
    assert open_cache(spec) is None and cache_status(spec) == {**cache_status(spec), "done": 0,
                                                              "complete": False}
    array, built = ensure_cache(spec, stream=None)
    assert built == 6
    np.testing.assert_array_equal(np.asarray(array[2]), np.full((8, 8, 1), 7, np.uint8))
    # another size, mode or file order: other keys
    assert CacheSpec(tuple(paths), 9, "L", tmp_path / "c").key() != spec.key()
    assert CacheSpec(tuple(paths), 8, "RGB", tmp_path / "c").key() != spec.key()
    assert CacheSpec(tuple(paths[::-1]), 8, "L", tmp_path / "c").key() != spec.key()
    assert CacheSpec(tuple(paths[:-1]), 8, "L", tmp_path / "c").key() != spec.key()


def test_a_damaged_or_foreign_cache_is_not_used(tmp_path):
    paths = _images(tmp_path / "img", 5)
    spec = CacheSpec(tuple(paths), 8, "L", tmp_path / "c")
    build_cache(spec, workers=1, stream=None)
    files = spec.files()
    manifest = json.loads(files["manifest"].read_text())
    files["manifest"].write_text(json.dumps({**manifest, "key": "0" * 64}))
    assert open_cache(spec) is None  # a manifest of another key
    files["manifest"].write_text(json.dumps(manifest))
    np.save(files["done"], np.array([True, False, True, True, True]))
    assert open_cache(spec) is None and cache_status(spec)["done"] == 4
    _, built = ensure_cache(spec, stream=None)
    assert built == 1  # resumed: only the row not marked done
    np.lib.format.open_memmap(files["npy"], mode="w+", dtype=np.uint8, shape=(5, 9, 8, 1))
    assert open_cache(spec) is None  # wrong shape
    array, built = ensure_cache(spec, stream=None)
    assert built == 5
    np.testing.assert_array_equal(np.asarray(array), _reference(paths, 8, "L"))


_KILLED_BUILD = textwrap.dedent("""
    import sys, time
    from expost.experiments.datasets import image_cache as ic
    real = ic.decode_resized
    def slow(*args):  # the test slows decoding down so that the kill lands mid-build
        time.sleep(0.02)
        return real(*args)
    ic.decode_resized = slow
    paths = sys.argv[3:]
    spec = ic.CacheSpec(tuple(paths), int(sys.argv[2]), "L", ic.Path(sys.argv[1]), "k")
    ic.build_cache(spec, workers=2, chunk=4, stream=None)
""")


def test_a_build_killed_midway_resumes_and_equals_an_uninterrupted_one(tmp_path):
    paths = _images(tmp_path / "img", 240, size=(64, 48))
    folder = tmp_path / "killed"
    spec = CacheSpec(tuple(paths), 24, "L", folder, "k")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(folder), "24", *paths],
                            env=env, start_new_session=True)
    done_file = spec.files()["done"]
    deadline = time.monotonic() + 120
    partial = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                partial = int(np.load(done_file, allow_pickle=False).sum())
            except (OSError, ValueError, EOFError):
                partial = 0
            if partial >= 8:
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the builder and its pool workers
        proc.wait()
    assert 0 < partial < 240, f"the kill should land mid-build ({partial} of 240 done)"
    status = cache_status(spec)
    assert not status["complete"] and 0 < status["done"] < 240
    assert open_cache(spec) is None  # an unfinished cache is never read
    resumed, built = build_cache(spec, workers=2, chunk=16, stream=None)
    assert built == 240 - status["done"]  # only what the done-mask lacked
    fresh, _ = build_cache(CacheSpec(tuple(paths), 24, "L", tmp_path / "fresh", "k"),
                           workers=1, stream=None)
    assert np.array_equal(np.asarray(resumed), np.asarray(fresh))
    np.testing.assert_array_equal(np.asarray(fresh), _reference(paths, 24, "L"))


def test_cache_folder_option_env_and_default(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_folder(None, tmp_path / "data") == tmp_path / "data" / ".expost-cache"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_folder(None, tmp_path / "data") == tmp_path / "env"
    assert cache_folder(tmp_path / "opt", tmp_path / "data") == tmp_path / "opt"


def test_unwritable_cache_folder_and_unreadable_image(tmp_path):
    paths = _images(tmp_path / "img", 3)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match=r"cache_dir=FOLDER or set \$EXPOST_CACHE"):
        build_cache(CacheSpec(tuple(paths), 8, "L", blocker / "sub"), stream=None)
    Path(paths[1]).write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"00001\.png' cannot be read as an image"):
        build_cache(CacheSpec(tuple(paths), 8, "L", tmp_path / "c"), workers=1, stream=None)
    with pytest.raises(ValueError, match="cannot be read as an image"):
        decode_resized(paths[1], 8, "L")


def test_an_image_over_pillows_pixel_limit_names_its_file(tmp_path):
    """Pillow refuses images above about 179 million pixels (a decompression-bomb guard)
    with an error of its own class, not an OSError: it came out as an unexpected error
    naming no file. 15,000 x 15,000 black pixels make a 27 kB PNG."""
    from PIL import Image

    paths = _images(tmp_path / "img", 2)
    Image.new("1", (15_000, 15_000)).save(paths[1])
    with pytest.raises(ValueError, match=r"00001\.png' is too large an image to decode .*225000000 "
                                         r"pixels.*MAX_IMAGE_PIXELS"):
        decode_resized(paths[1], 8, "L")
    with pytest.raises(ValueError, match=r"00001\.png' is too large an image"):
        build_cache(CacheSpec(tuple(paths), 8, "L", tmp_path / "c"), workers=1, stream=None)


def _chest(root: Path, n: int = 30) -> None:
    (root / "images").mkdir(parents=True)
    rows = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
    rng = np.random.default_rng(1)
    for k in range(n):
        name = f"{k:08d}_000.png"
        Image.fromarray(rng.integers(0, 256, (30, 34), dtype=np.uint8), mode="L").save(
            root / "images" / name)
        rows.append(f"{name},{'No Finding' if k % 3 else 'Effusion'},0,{k}")
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")


def test_chestxray14_reads_the_cache_and_never_the_pngs(tmp_path, monkeypatch):
    _chest(tmp_path / "data")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    plain = load_dataset("chestxray14", root=tmp_path / "data", image_size=12, cache=False)
    cached = load_dataset("chestxray14", root=tmp_path / "data", image_size=12)
    info = cached.meta["cache"]
    assert info["built_now"] == 30 and Path(info["path"]).parent == tmp_path / "cache"
    for split in ("train", "val", "test"):
        a, b = getattr(plain, split), getattr(cached, split)
        assert a.paths == b.paths and torch.equal(a.labels, b.labels)
        a.augment = b.augment = False
        xa = torch.stack([a[i][0] for i in range(len(a))])
        xb, _ = b.get_batch(list(range(len(b))))
        assert torch.equal(xa, xb)
    xs = [plain.test.load(i) for i in range(len(plain.test))]  # decoded before the patch
    # epochs read the cache: with decoding made to fail, the cached data set reads them all
    import expost.experiments.datasets.image_cache as ic

    def no_decoding(*args):
        raise AssertionError("a PNG was decoded")

    monkeypatch.setattr(ic, "decode_resized", no_decoding)
    again = load_dataset("chestxray14", root=tmp_path / "data", image_size=12)
    assert again.meta["cache"]["built_now"] == 0
    x, _ = again.test.get_batch(list(range(len(again.test))))
    assert torch.equal(x, torch.stack(xs))


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_cache_worker_ends_with_its_parent(tmp_path):
    """Forked decoding workers inherit the lock files; a parent killed with SIGKILL left
    them running, so a rerun waited on the cache's lock for ever (and `expost run` said
    another process was running). A worker now ends when its parent does."""
    code = textwrap.dedent("""
        import os, sys, time
        from expost.experiments.datasets.image_cache import _pool
        pool = _pool(1)
        pid = pool.submit(os.getpid).result()
        pool.submit(time.sleep, 120)  # a long task, as a large decode is
        print(pid, flush=True)
        os._exit(0)  # the parent ends as SIGKILL ends it: no shutdown, no cleanup
    """)
    out = tmp_path / "out.txt"
    with out.open("w") as fh:  # not a pipe: the worker holds its copies of stdout and stderr
        proc = subprocess.run([sys.executable, "-c", code], stdout=fh, stderr=fh, timeout=120)
    assert proc.returncode == 0, out.read_text()
    worker = int(out.read_text().split()[0])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"the worker {worker} outlived its parent")


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    """Pillow's convert clips values above 255: a 16-bit grayscale PNG came out nearly all
    white. Its values are scaled by 255 / 65535; a float image is read when its values lie
    in [0, 255] and refused otherwise, naming the file."""
    from expost.experiments.datasets.image_cache import decode_resized

    a = (np.arange(120, dtype=np.uint32).reshape(10, 12) * 500).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode == "I;16"
    got = decode_resized(tmp_path / "i16.png", 12, "L")[:, :, 0]
    want = np.asarray(Image.fromarray(np.rint(a * (255 / 65535)).astype(np.uint8)).resize(
        (12, 12), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(got, want)
    assert got.mean() == pytest.approx(a.mean() * 255 / 65535, rel=0.02)  # was nearly 255
    Image.fromarray(np.full((4, 4), 100.5, np.float32)).save(tmp_path / "f.tiff")
    assert decode_resized(tmp_path / "f.tiff", 4, "L").max() == 100  # rint: half to even
    Image.fromarray(np.full((4, 4), 1000.0, np.float32)).save(tmp_path / "big.tiff")
    with pytest.raises(ValueError, match=r"big\.tiff' is a floating-point image with values in "
                                         r"\[1000, 1000\]"):
        decode_resized(tmp_path / "big.tiff", 4, "L")
