"""expost sweep: the grid's cartesian product, one experiment per point, a manifest, resume,
and expost table SWEEP_DIR with one Table 1 per point."""

from __future__ import annotations

import json

import pytest
import yaml

from backend_cases import TINY, dump
from expost.cli import main
from expost.experiments.config import load_config
from expost.experiments.sweep import expand_grid, parse_grid, sweep_points

SMALL = {**TINY, "seeds": [0, 1], "regimes": ["weighted", "expost"],
         "training": {"epochs": 1, "batch_size": 256}}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    (d / "c.yaml").write_text(yaml.safe_dump(SMALL))
    argv = ["sweep", str(d / "c.yaml"), "--grid", "objective.emphasized=3,8",
            "--grid", "objective.ratio=9,99", "--out", str(d / "s"), "--quiet"]
    assert main(argv) == 0
    return d, argv


def test_the_grid_is_a_cartesian_product_with_a_manifest(swept):
    d, _ = swept
    manifest = json.loads((d / "s" / "sweep.json").read_text())
    assert manifest["grid"] == [{"key": "objective.emphasized", "values": ["3", "8"]},
                                {"key": "objective.ratio", "values": ["9", "99"]}]
    points = sweep_points(d / "s")
    assert [p["values"] for p in points] == [
        {"objective.emphasized": e, "objective.ratio": r} for e in ("3", "8") for r in ("9", "99")]
    for p in points:
        with open(d / "s" / p["dir"] / "results.sqlite", "rb"):
            pass
        from expost.experiments.store import ResultStore

        with ResultStore(d / "s" / p["dir"], readonly=True) as store:
            cfg = store.experiment_info()["config"]
            assert cfg["objective"]["emphasized"] == int(p["values"]["objective.emphasized"])
            assert cfg["objective"]["ratio"] == float(p["values"]["objective.ratio"])
            assert {t["status"] for t in store.trainings()} == {"finished"}


def test_rerunning_a_sweep_resumes_and_another_grid_is_refused(swept, capsys):
    d, argv = swept
    before = {p["dir"]: dump(d / "s" / p["dir"]) for p in sweep_points(d / "s")}
    assert main(argv) == 0  # nothing left to train
    assert {p["dir"]: dump(d / "s" / p["dir"]) for p in sweep_points(d / "s")} == before
    capsys.readouterr()
    assert main([a.replace("=9,99", "=5") for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost sweep: error: --out") and "another sweep" in err


def test_table_prints_one_block_per_point(swept, capsys):
    d, _ = swept
    capsys.readouterr()
    assert main(["table", str(d / "s"), "--format", "csv", "--bootstrap", "40"]) == 0
    out = capsys.readouterr().out
    points = sweep_points(d / "s")
    assert [line for line in out.splitlines() if line.startswith("## ")] == [
        f"## {p['dir']} (objective.emphasized={p['values']['objective.emphasized']}, "
        f"objective.ratio={p['values']['objective.ratio']})" for p in points]
    # each block is that point's own Table 1, as `expost table POINT_DIR` prints it
    for p in points:
        assert main(["table", str(d / "s" / p["dir"]), "--format", "csv", "--bootstrap",
                     "40"]) == 0
        assert capsys.readouterr().out in out


@pytest.mark.parametrize(("points", "says"), [
    ([{"values": {"a": 1}, "dir": "/elsewhere"}], "point 0 must name its folder inside the sweep"),
    ([{"values": {"a": 1}, "dir": "../x"}], "point 0 must name its folder inside the sweep"),
    ([{"values": {"a": 1}, "dir": ".."}], "point 0 must name its folder inside the sweep"),
    ([{"values": {"a": 1}}], "point 0 must name its folder inside the sweep"),
    ([{"values": [1], "dir": "p0"}], "point 0 must give its grid values as a mapping"),
    ({"a": 1}, "expected a non-empty list of points"),
    ([], "expected a non-empty list of points"),
    (["p0"], "point 0 must name its folder"),
])
def test_a_manifest_that_points_elsewhere_or_is_malformed_is_refused(tmp_path, capsys, points,
                                                                    says):
    """`expost table SWEEP --out DIR` wrote each point's tables to DIR / point["dir"]: a
    manifest saying "/elsewhere" or "../x" had it overwrite tables outside DIR. Malformed
    points gave an 'unexpected AttributeError' or a bare 'dir'."""
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"points": points}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "table1.md").write_text("the user's own table\n")
    capsys.readouterr()
    assert main(["table", str(sweep), "--bootstrap", "0", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost table: error: ") and says in err and len(err.splitlines()) == 1
    assert (elsewhere / "table1.md").read_text() == "the user's own table\n"


def test_a_point_folder_that_links_outside_the_output_is_refused(swept, tmp_path, capsys):
    d, _ = swept
    first = sweep_points(d / "s")[0]["dir"]
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / first).symlink_to(elsewhere)
    capsys.readouterr()
    assert main(["table", str(d / "s"), "--bootstrap", "0", "--out", str(out)]) == 1
    assert "leads outside" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_grid_parsing():
    assert parse_grid(["a.b=1, 2"]) == [("a.b", ["1", "2"])]
    base = load_config(SMALL)
    points = expand_grid(base, [("objective.ratio", ["9", "99"]), ("seeds", ["[0]", "2"])])
    assert [name for name, _ in points] == [
        "p000-ratio=9-seeds=_0_", "p001-ratio=9-seeds=2", "p002-ratio=99-seeds=_0_",
        "p003-ratio=99-seeds=2"]
    with pytest.raises(ValueError, match=r"^--grid objective.ratio=-1: "):
        expand_grid(base, [("objective.ratio", ["9", "-1"])])


def test_a_grid_point_invalid_only_in_combination_is_named(tmp_path, capsys):
    """Each value passed alone; their combination failed with 'Invalid experiment config
    (mapping): optimizer: nesterov needs a positive momentum', naming no grid point."""
    cfg = {**SMALL, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.5}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["sweep", str(tmp_path / "c.yaml"), "--grid", "optimizer.nesterov=true,false",
                 "--grid", "optimizer.momentum=0.0,0.5", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost sweep: error: --grid: the point optimizer.nesterov=true "
                          "optimizer.momentum=0.0 (p000-nesterov=true-momentum=0.0) is not a "
                          "valid config: optimizer: nesterov needs a positive momentum"), err
    assert not (tmp_path / "s").exists()


def test_grid_values_may_be_lists_and_quoted_strings():
    """--grid split at every comma: seeds=[0,1],[2] gave a YAML error about '[0'."""
    assert parse_grid(["seeds=[0,1],[2]"]) == [("seeds", ["[0,1]", "[2]"])]
    assert parse_grid(["name='a,b',c"]) == [("name", ["'a,b'", "c"])]
    assert parse_grid(["x={a: 1, b: 2},3"]) == [("x", ["{a: 1, b: 2}", "3"])]
    points = expand_grid(load_config(SMALL), parse_grid(["seeds=[0,1],[2]"]))
    assert [values for _, values in points] == [{"seeds": "[0,1]"}, {"seeds": "[2]"}]
    assert [load_config(SMALL, overrides=[f"seeds={v['seeds']}"]).seeds
            for _, v in points] == [[0, 1], [2]]
