"""examples/sklearn_cost_matrix.py runs, on a reduced setting, and says what it should."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sklearn_cost_matrix.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("sklearn_cost_matrix", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_example_main_reduced(example, capsys):
    results = example.main(("breast_cancer", "digits"), n_splits=2, n_repeats=1, random_state=0)
    out = capsys.readouterr().out
    for name in ("breast_cancer", "digits"):
        assert f"{name}: mean [95% interval over folds]" in out
        for regime in example.REGIMES:
            scores = results[name][regime]
            assert scores["weighted_loss"].shape == (2,)
            assert scores["utility"].shape == (2,)
            assert np.all(scores["weighted_loss"] > 0) and np.all(np.isfinite(scores["utility"]))
    assert "EPW - WT (paired)" in out and "% gain of EPW (Table 1)" in out
    digits = results["digits"]
    # scoring raw q with the weighted loss is far worse than p^u(q) (Theorem 1)
    assert digits["Ex Post Weighting"]["weighted_loss"].max() < digits["Unweighted Raw"][
        "weighted_loss"
    ].min()


def test_example_summary_interval(example):
    s = example.Summary.of(np.arange(1.0, 101.0))
    assert s.low <= s.mean <= s.high
    assert s.mean == pytest.approx(50.5)
    assert s.low == pytest.approx(np.percentile(np.arange(1.0, 101.0), 2.5))


def test_example_rejects_unknown_dataset(example):
    with pytest.raises(ValueError, match="unknown data set 'iris'"):
        example.problem("iris")


def test_docs_page_code_runs(capsys):
    """The code blocks of docs/sklearn.md run as written."""
    from threadpoolctl import threadpool_limits

    page = (EXAMPLE.parents[1] / "docs" / "sklearn.md").read_text()
    blocks = [b.split("```", 1)[0] for b in page.split("```python\n")[1:]]
    assert len(blocks) == 2
    with threadpool_limits(limits=1):
        for block in blocks:
            exec(compile(block, "docs/sklearn.md", "exec"), {})
    out = capsys.readouterr().out
    assert "ex post: utility" in out and "weighted training: utility" in out
