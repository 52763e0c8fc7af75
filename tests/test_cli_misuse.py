"""The command line misused on purpose: every case ends in one line
``expost <command>: error: ...`` naming the file or option, exit status 1, no traceback."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from expost.cli import main
from expost.experiments.runners import run_experiment

SMALL = {
    "name": "misuse",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [8]}},
    "objective": {"kind": "emphasize", "emphasized": 3, "ratio": 9},
    "regimes": ["weighted", "expost"],
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 256},
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder with a finished experiment (run/), its config and input files of every kind."""
    d = tmp_path_factory.mktemp("misuse")
    run_experiment(SMALL, output_dir=d / "run", progress=False)
    (d / "c.yaml").write_text(yaml.safe_dump(SMALL))
    (d / "other.yaml").write_text(yaml.safe_dump({**SMALL, "seeds": [1]}))
    (d / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (d / "file.txt").write_text("not a folder")
    (d / "u.csv").write_text("1,0\n0,5\n")
    (d / "u_neg.csv").write_text("1,-1\n0,5\n")
    (d / "u3.csv").write_text("1,0,0\n0,5,0\n0,0,1\n")
    (d / "p.csv").write_text("a,b\n0.9,0.1\n0.2,0.8\n")
    (d / "p_numeric_header.csv").write_text("0,1\n0.9,0.1\n0.2,0.8\n")
    (d / "p_missing.csv").write_text("a,b\n0.9,0.1\n0.5,\n")
    (d / "p_missing_first.csv").write_text("0.5,\n0.9,0.1\n0.2,0.8\n")
    (d / "p_text.csv").write_text("a,b\n0.9,0.1\n0.5,half\n")
    (d / "p_off.csv").write_text("0.5,0.6\n0.2,0.8\n")
    (d / "p_neg.csv").write_text("-0.5,1.5\n")
    (d / "p_cols.csv").write_text("0.2,0.3,0.5\n")
    (d / "p_empty.csv").write_text("")
    (d / "p_latin1.csv").write_bytes("caf\xe9,b\n0.5,0.5\n".encode("latin-1"))
    (d / "p_bad.npy").write_text("not an array")
    np.save(d / "p_3d.npy", np.zeros((2, 2, 2)))
    (d / "u_ragged.csv").write_text("1,0\n0\n")
    (d / "empty_dir").mkdir()
    (d / "p_long_cell.csv").write_text("a,b\n0.5," + "x" * 200_000 + "\n")
    np.savez(d / "p.npz", p=np.eye(2))
    with open(d / "p_huge.npy", "wb") as fh:  # 128 bytes that claim 1.6 TB
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**11, 2)})
    (d / "p_dup.csv").write_text("a,a\n0.5,0.5\n")
    (d / "bad_sweep").mkdir()
    (d / "bad_sweep" / "sweep.json").write_text("{not json")
    shutil.copytree(d / "run", d / "garbage_run")
    (d / "garbage_run" / "results.sqlite").write_bytes(b"\x00garbage" * 1000)
    return d


def _cli(argv):
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        return exc.code


#: (command line with {d} for the folder, the command named, a word the message must hold)
CASES = [
    # unknown commands: did you mean
    ("rn", "", "did you mean 'run'"),
    # input files that read badly (named, with what was wrong)
    ("decide --utility {d}/u.csv --probs {d}/p_long_cell.csv", "decide",
     "row 2 of '{d}/p_long_cell.csv' cannot be read as CSV (field larger than field limit"),
    ("decide --utility {d}/u.csv --probs {d}/p.npz", "decide", "is an .npz archive"),
    ("decide --utility {d}/u.csv --probs {d}/p_huge.npy", "decide",
     "'{d}/p_huge.npy' declares an array of shape (100000000000, 2), too large"),
    ("decide --utility {d}/u.csv --probs {d}/p_dup.csv", "decide", "names the class 'a' more than once"),
    ("decide --utility {d}/u.csv --probs {d}/empty_dir", "decide", "'{d}/empty_dir' is a folder"),
    ("decide --utility {d}/u.csv --probs {d}/p.csv --out {d}/new_dir/", "decide",
     "ends with a slash, which names a folder"),
    ("evalute {d}/run", "", "did you mean 'evaluate'"),
    ("tabel {d}/run", "", "did you mean 'table'"),
    ("reprot {d}/run", "", "did you mean 'report'"),
    ("decied", "", "did you mean 'decide'"),
    # run
    ("run {d}/c.yaml --out {d}/file.txt", "run", "--out"),
    ("run {d}/c.yaml --out {d}/file.txt/sub", "run", "file.txt"),
    ("run {d}/missing.yaml", "run", "missing.yaml"),
    ("run {d}/c.yaml --backend bogus", "run", "--backend"),
    ("run {d}/c.yaml --jobs 0", "run", "--jobs"),
    ("run {d}/c.yaml --jobs two", "run", "--jobs"),
    ("run {d}/c.yaml --backend ray --jobs 2", "run", "--jobs"),
    ("run {d}/c.yaml --address auto", "run", "--address"),
    ("run {d}/c.yaml --retries -1", "run", "--retries"),
    ("run {d}/c.yaml --cpus-per-run -2", "run", "--cpus-per-run"),
    ("run {d}/c.yaml --storage s3://bucket/x", "run", "--storage"),
    # sweep
    ("sweep {d}/c.yaml", "sweep", "--grid"),
    ("sweep {d}/c.yaml --grid objective.ratio", "sweep", "--grid"),
    ("sweep {d}/c.yaml --grid objective.ratio=9,", "sweep", "--grid"),
    ("sweep {d}/c.yaml --grid objective.ratio=9,-1", "sweep", "--grid objective.ratio=-1"),
    ("sweep {d}/c.yaml --grid nosuch.key=1,2", "sweep", "--grid nosuch.key=1"),
    ("sweep {d}/c.yaml --grid output_dir=a,b", "sweep", "--grid"),
    ("sweep {d}/c.yaml --grid seeds=1 --grid seeds=2", "sweep", "given twice"),
    ("sweep {d}/missing.yaml --grid seeds=1", "sweep", "missing.yaml"),
    ("table {d}/bad_sweep", "table", "sweep.json"),
    ("run {d}/c.yaml --no-such-flag", "", "--no-such-flag"),
    ("run {d}/other.yaml --out {d}/run", "run", "--force-new"),
    ("run {d}/c.yaml --out {d}/garbage_run", "run", "results.sqlite"),
    # evaluate
    ("evaluate", "evaluate", "RUN_DIR"),
    ("evaluate {d}/missing", "evaluate", "missing"),
    ("evaluate {d}/empty_dir --emphasize 3", "evaluate", "results.sqlite"),
    ("evaluate {d}/garbage_run --emphasize 3", "evaluate", "results.sqlite"),
    ("evaluate {d}/run --emphasize nope", "evaluate", "nope"),
    ("evaluate {d}/run --emphasize 99", "evaluate", "99"),
    ("evaluate {d}/run --emphasize 3 --bootstrap -1", "evaluate", "--bootstrap"),
    ("evaluate {d}/run --emphasize 3 --ratio 0", "evaluate", "--ratio"),
    ("evaluate {d}/run --emphasize 3 --ratio abc", "evaluate", "--ratio"),
    ("evaluate {d}/run --utility {d}/missing.csv", "evaluate", "missing.csv"),
    ("evaluate {d}/run --utility {d}/u.csv", "evaluate", "--utility"),
    ("evaluate {d}/run --emphasize 3 --out {d}/empty_dir", "evaluate", "--out"),
    ("evaluate {d}/run --emphasize 3 --out {d}/file.txt/x.csv", "evaluate", "file.txt"),
    # decide
    ("decide --utility {d}/u.csv", "decide", "--probs"),
    ("decide --utility {d}/missing.csv --probs {d}/p.csv", "decide", "missing.csv"),
    ("decide --utility {d}/u.csv --probs {d}/p_numeric_header.csv", "decide", "--header"),
    ("decide --utility {d}/u.csv --probs {d}/p_missing.csv", "decide", "row 3, column 2"),
    ("decide --utility {d}/u.csv --probs {d}/p_missing_first.csv", "decide", "row 1, column 2"),
    ("decide --utility {d}/u.csv --probs {d}/p_text.csv", "decide", "'half'"),
    ("decide --utility {d}/u.csv --probs {d}/p_off.csv", "decide",
     "summing to 1.1. --renormalize divides each row by its sum."),
    ("decide --utility {d}/u.csv --probs {d}/p_neg.csv --renormalize", "decide", "--probs"),
    ("decide --utility {d}/u.csv --probs {d}/p_cols.csv", "decide", "--probs"),
    ("decide --utility {d}/u3.csv --probs {d}/p.csv", "decide", "--probs"),
    ("decide --utility {d}/u.csv --probs {d}/p_empty.csv", "decide", "p_empty.csv"),
    ("decide --utility {d}/u.csv --probs {d}/p_latin1.csv", "decide", "UTF-8"),
    ("decide --utility {d}/u.csv --probs {d}/p_bad.npy", "decide", "p_bad.npy"),
    ("decide --utility {d}/u.csv --probs {d}/p_3d.npy", "decide", "p_3d.npy"),
    ("decide --utility {d}/u_neg.csv --probs {d}/p.csv", "decide", "--utility"),
    ("decide --utility {d}/u_ragged.csv --probs {d}/p.csv", "decide", "u_ragged.csv"),
    ("decide --utility {d}/u.csv --probs {d}/p.csv --out {d}/empty_dir", "decide", "--out"),
    ("decide --utility {d}/u.csv --probs {d}/p.csv --out {d}/file.txt/d.csv", "decide",
     "file.txt"),
    # an output over an input: refused before any work
    ("decide --utility {d}/u.csv --probs {d}/p.csv --out {d}/p.csv", "decide", "is the --probs file"),
    ("decide --utility {d}/u.csv --probs {d}/p.csv --out {d}/../{n}/u.csv", "decide",
     "is the --utility file"),
    ("evaluate {d}/run --emphasize 3 --out {d}/run/results.sqlite", "evaluate",
     "is the experiment's results.sqlite in"),
    ("evaluate {d}/run --emphasize 3 --out {d}/run/results.sqlite-wal", "evaluate", "results.sqlite-wal"),
    ("evaluate {d}/run --emphasize 3 --out {d}/run/checkpoints/x.csv", "evaluate",
     "lies in the experiment's checkpoints folder"),
    ("evaluate {d}/run --utility {d}/u.csv --out {d}/u.csv", "evaluate", "is a --utility file"),
    ("report {d}/run --bootstrap 0 --out {d}/run/results.sqlite", "report", "results.sqlite in"),
    ("table {d}/run --bootstrap 0 --out {d}/run/checkpoints", "table", "checkpoints folder in"),
    ("plot {d}/run --out {d}/run/checkpoints/figures", "plot", "lies in the experiment's checkpoints"),
    # the report's commands
    ("table {d}/missing", "table", "missing"),
    ("table {d}/empty_dir", "table", "results.sqlite"),
    ("table {d}/garbage_run", "table", "results.sqlite"),
    ("table {d}/run --format xlsx", "table", "--format"),
    ("table {d}/run --bootstrap -3", "table", "--bootstrap"),
    ("table {d}/run --bootstrap 1", "table", "from 40 (a 95% interval needs one resample"),
    ("report {d}/run --bootstrap 39", "report", "--bootstrap"),
    ("evaluate {d}/run --emphasize 1 --bootstrap 2", "evaluate", "--bootstrap"),
    ("table {d}/run --bootstrap 99999999999999999999", "table", "to 10,000,000 resamples"),
    ("table {d}/run --treatment metacost", "table", "treatment"),
    ("table {d}/run --bootstrap 0 --out {d}/file.txt", "table", "file.txt"),
    ("plot {d}/run --metric nope", "plot", "--metric"),
    ("report {d}/run --bootstrap 0 --out {d}/file.txt/r.html", "report", "file.txt"),
    ("theory --ratio -1", "theory", "--ratio"),
]


@pytest.mark.parametrize("line, command, needle", CASES, ids=[c[0][:40] for c in CASES])
def test_misuse_is_one_clear_line(place, capsys, line, command, needle):
    code = _cli(line.format(d=place, n=place.name).split())
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "Traceback" not in out + err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith(f"expost {command}: error: " if command else "expost: error: "), err
    assert needle.format(d=place) in err, err


def test_decide_suggests_renormalize_only_where_it_would_help(place, capsys):
    assert _cli(["decide", "--utility", place / "u.csv", "--probs", place / "p_neg.csv"]) == 1
    err = capsys.readouterr().err
    assert "--probs" in err and "--renormalize" not in err  # a negative entry: no sum fixes it


def test_decide_names_the_first_bad_row_as_the_file_numbers_it(tmp_path, capsys):
    """Every error about a row of --probs gives the file's own row (and column) numbers,
    from 1 as the CSV reader's errors do, and names the first bad row, not the worst;
    a .npy array's rows are its indices, from 0, and the message says so."""
    (tmp_path / "u.csv").write_text("1,0\n0,5\n")
    files = {  # a header, a good row and a blank line come before the first bad row
        "off.csv": "a,b\n0.9,0.1\n\n0.5,0.6\n0.1,1.9\n",
        "neg.csv": "a,b\n0.9,0.1\n\n0.9,-0.2\n-0.9,1.9\n",
        "nan.csv": "a,b\n0.9,0.1\n\n0.5,nan\n",
        "zero.csv": "0.9,0.1\n0,0\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    np.save(tmp_path / "off.npy", np.array([[0.5, 0.5], [0.5, 0.6], [0.1, 1.9]]))
    expected = [
        ("off.csv", [], "got row 4 of '{p}' summing to 1.1. --renormalize divides each row by its sum."),
        ("neg.csv", [], "nonnegative probabilities, got -0.2 at row 4, column 2 of '{p}'."),
        ("nan.csv", [], "finite (no NaN or inf), got nan at row 4, column 2 of '{p}'."),
        ("zero.csv", [], "got row 2 of '{p}' summing to 0."),  # no sum fixes it: no hint
        ("off.npy", [], "got row 1 (counting from 0) of '{p}' summing to 1.1."),
        ("neg.csv", ["--renormalize"], "`--probs`: row 4 of '{p}' cannot be renormalised"),
        ("zero.csv", ["--renormalize"], "`--probs`: row 2 of '{p}' cannot be renormalised"),
    ]
    for name, extra, needle in expected:
        path = tmp_path / name
        assert _cli(["decide", "--utility", tmp_path / "u.csv", "--probs", path, *extra]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle.format(p=path) in err, (name, err)
        assert ("--renormalize divides" in err) == (name.startswith("off") and not extra), err


def test_an_output_never_replaces_an_input(place, tmp_path, capsys):
    """The refused cases above leave every input as it was; an output through a link to
    an input replaces the link (atomic_open's rename), not the input, so it is allowed."""
    inputs = [place / "p.csv", place / "u.csv", place / "run" / "results.sqlite"]
    checkpoints = sorted(str(f) for f in (place / "run" / "checkpoints").rglob("*"))
    before = [f.read_bytes() for f in inputs]
    for line, command, _ in CASES:
        if "--out" in line and command in ("decide", "evaluate", "report", "table", "plot"):
            _cli(line.format(d=place, n=place.name).split())
    assert [f.read_bytes() for f in inputs] == before
    assert sorted(str(f) for f in (place / "run" / "checkpoints").rglob("*")) == checkpoints
    link = tmp_path / "link.csv"
    link.symlink_to(place / "p.csv")
    assert _cli(["decide", "--utility", place / "u.csv", "--probs", place / "p.csv", "--out", link]) == 0
    assert not link.is_symlink() and link.read_text().startswith("decision")
    assert (place / "p.csv").read_bytes() == before[0]
    link2 = tmp_path / "p_link.csv"  # the input reached through a link, the output its target
    link2.symlink_to(place / "p.csv")
    assert _cli(["decide", "--utility", place / "u.csv", "--probs", link2, "--out", place / "p.csv"]) == 1
    assert "is the --probs file" in capsys.readouterr().err
    assert (place / "p.csv").read_bytes() == before[0]
    assert _cli(["table", place / "run", "--bootstrap", "0"]) == 0  # the store still reads


def test_the_catalogue_is_large():
    assert len(CASES) >= 40


def test_a_locked_directory_and_a_missing_device(place, tmp_path, capsys):
    d = tmp_path / "locked"
    d.mkdir()
    with open(d / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as if another run were going on
        assert _cli(["run", place / "c.yaml", "--out", d]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost run: error: Another expost process is running")
    assert err.count("\n") == 1
    if not torch.cuda.is_available():
        assert _cli(["run", place / "c.yaml", "--out", tmp_path / "cuda",
                     "--set", "device=cuda"]) == 1
        err = capsys.readouterr().err
        assert "CUDA is not available" in err and err.count("\n") == 1
        assert not (tmp_path / "cuda" / "results.sqlite").exists()


@pytest.mark.parametrize("setting, needle", [
    ("name=..", "name"), ("name=a/b", "name"), ("seeds=100000000", "seeds"),
    ("training.epochs=100000000", "training.epochs"), ("model.options.hidden=[-5]", "hidden"),
    ("dataset.options.flatten=3", "flatten"),
])
def test_invalid_configs_are_refused_before_anything_is_created(place, tmp_path, capsys,
                                                                setting, needle):
    code = _cli(["run", place / "c.yaml", "--out", tmp_path / "x", "--set", setting])
    err = capsys.readouterr().err
    assert code == 1 and "Invalid experiment config" in err and needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_plain_expost_prints_help_and_debug_shows_the_traceback(place, capsys):
    assert main([]) == 0
    assert "usage: expost" in capsys.readouterr().out
    for argv in (["evaluate", place / "garbage_run", "--emphasize", "3"],
                 ["decide", "--utility", place / "u.csv", "--probs", place / "p_off.csv"],
                 ["table", place / "garbage_run"], ["report", place / "garbage_run"]):
        assert main([*map(str, argv), "--debug"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err
        assert err.strip().splitlines()[-1].startswith(f"expost {argv[0]}: error")


def test_run_out_an_existing_file_in_a_real_process(place):
    done = subprocess.run([sys.executable, "-m", "expost", "run", "--out",
                           str(place / "file.txt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("expost run: error: `--out'") or "--out" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_decide_numeric_header_and_missing_values(place, capsys):
    d = place
    assert _cli(["decide", "--utility", d / "u.csv", "--probs", d / "p_numeric_header.csv",
                 "--header"]) == 1  # u.csv has no header: its first row is not "0,1"
    capsys.readouterr()
    (d / "u_named.csv").write_text("0,1\n1,0\n0,5\n")
    assert _cli(["decide", "--utility", d / "u_named.csv", "--probs",
                 d / "p_numeric_header.csv", "--header"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows == ["decision,label,expected_utility", "0,0,0.9", "1,1,4.0"]  # 2 rows, not 3
    assert _cli(["decide", "--utility", d / "u.csv", "--probs", d / "p_numeric_header.csv",
                 "--no-header"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[1:] == ["1,5.0", "0,0.9", "1,4.0"]  # the first row read as data
    np.save(d / "p.npy", np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert _cli(["decide", "--utility", d / "u.csv", "--probs", d / "p.npy"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1:] == ["0,0.9", "1,4.0"]
    assert _cli(["decide", "--utility", d / "u.csv", "--probs", d / "p_off.csv",
                 "--renormalize"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[1] == f"1,{5 * 0.6 / 1.1!r}"  # (0.5, 0.6) / 1.1


def test_outputs_are_written_atomically(place, tmp_path, capsys, monkeypatch):
    import errno
    import os

    target = tmp_path / "new" / "d.csv"  # a missing parent folder is created
    argv = ["decide", "--utility", place / "u.csv", "--probs", place / "p.csv", "--out", target]
    assert _cli(argv) == 0
    first = target.read_text()
    assert first.splitlines()[1:] == ["0,a,0.9", "1,b,4.0"]

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    capsys.readouterr()
    assert _cli(argv) == 1
    assert "the disk is full" in capsys.readouterr().err
    assert target.read_text() == first and [p.name for p in target.parent.iterdir()] == ["d.csv"]


def test_atomic_writes_refuse_a_path_leading_out(tmp_path):
    from expost._atomic import atomic_write

    inside = tmp_path / "run"
    (inside / "report").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (inside / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="leads outside"):
        atomic_write(inside / "link" / "x.html", "x", root=inside)
    with pytest.raises(ValueError, match="leads outside"):
        atomic_write(inside / ".." / "x.html", "x", root=inside)
    assert list(outside.iterdir()) == [] and not (tmp_path / "x.html").exists()
    # a symbolic link as the file itself: refused with a root, else replaced (never its target)
    (outside / "t.html").write_text("keep")
    (inside / "report" / "r.html").symlink_to(outside / "t.html")
    with pytest.raises(ValueError, match="leads outside"):
        atomic_write(inside / "report" / "r.html", "new", root=inside)
    atomic_write(inside / "report" / "r.html", "new")
    assert (outside / "t.html").read_text() == "keep"
    assert (inside / "report" / "r.html").read_text() == "new"
    assert not (inside / "report" / "r.html").is_symlink()


def test_force_new_moves_only_the_experiment(place, tmp_path, capsys):
    d = tmp_path / "shared"
    shutil.copytree(place / "run", d)
    (d / "notes.txt").write_text("mine")
    code = _cli(["run", place / "other.yaml", "--out", d, "--force-new", "--no-report"])
    assert code == 0, capsys.readouterr().err
    assert (d / "notes.txt").read_text() == "mine"
    aside = list(tmp_path.glob("shared.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "results.sqlite").is_file()
    assert not (aside[0] / "notes.txt").exists()


def test_an_output_on_a_pipe_device_or_descriptor_is_written_through(place, tmp_path, capsys):
    """A rename would replace a named pipe, a device or a descriptor's link with a regular
    file: `--out /dev/null` run as root replaced the machine's /dev/null, and `--out
    /dev/stdout` its link. They are written through (appended to), and stay what they were."""
    import os
    import stat
    import threading

    args = ["decide", "--utility", place / "u.csv", "--probs", place / "p.csv", "--out"]
    want = "decision,label,expected_utility\n0,a,0.9\n1,b,4.0\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    assert _cli([*args, fifo]) == 0
    reader.join(10)
    assert got == [want] and stat.S_ISFIFO(os.lstat(fifo).st_mode)

    # a link to a descriptor (as /dev/stdout is), whose descriptor is redirected to a file
    out, log = tmp_path / "to_stdout", tmp_path / "log.txt"
    out.symlink_to("/proc/self/fd/1")
    log.write_text("before\n")
    with log.open("a") as fh:
        proc = subprocess.run([sys.executable, "-m", "expost", *map(str, args), str(out)],
                              stdout=fh, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "before\n" + want
    assert out.is_symlink() and os.readlink(out) == "/proc/self/fd/1"

    if os.geteuid() != 0:
        return  # devices need root to make
    null, full = tmp_path / "null", tmp_path / "full"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    capsys.readouterr()
    assert _cli([*args, null]) == 0
    assert _cli([*args, full]) == 1
    assert "the disk is full" in capsys.readouterr().err
    assert stat.S_ISCHR(os.lstat(null).st_mode) and stat.S_ISCHR(os.lstat(full).st_mode)


def test_a_reader_that_goes_away_ends_the_command_quietly(place, tmp_path):
    """`expost decide ... | head -1` printed 'error: [Errno 32] Broken pipe'; it now stops
    with no message and status 141, as a command killed by SIGPIPE would."""
    np.save(tmp_path / "big.npy", np.random.default_rng(0).dirichlet(np.ones(2), 100_000))
    proc = subprocess.Popen([sys.executable, "-m", "expost", "decide", "--utility",
                             str(place / "u.csv"), "--probs", str(tmp_path / "big.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"decision,expected_utility")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 141 and err == b""


def test_an_unwritable_folder_is_named_by_the_file_asked_for(tmp_path, monkeypatch):
    """mkstemp's error named the hidden temporary file ('.x.csv.3topyqt9.tmp')."""
    import tempfile

    from expost._atomic import atomic_write

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".x.csv.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        atomic_write(tmp_path / "x.csv", "a")
    assert info.value.filename == str(tmp_path / "x.csv")


def test_metrics_beyond_float64_are_one_note_not_warnings(place, capsys):
    """Utilities near 1e308 (--no-normalize) printed five RuntimeWarnings with their source
    lines, and a 309-digit number in the table."""
    import re

    assert _cli(["evaluate", place / "run", "--emphasize", "1", "--ratio", "1e308",
                 "--no-normalize", "--bootstrap", "0"]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("expost evaluate: note: some metrics or gains "
                                                   "are beyond float64's range"), err
    assert "inf" in out and not re.search(r"\d{20}", out)
