"""The layers of docs/architecture.md hold, and its index of the paper's results is true.

The import rules are read from the source (every ``import`` statement, also the
ones inside functions), so a lazy import that breaks a layer is caught too.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

HEAVY = ("torch", "sklearn", "matplotlib", "pydantic", "yaml", "rich", "PIL")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                out.add(stem)
                if node.module is None:  # from . import x: x may be a module
                    out.update(f"{stem}.{a.name}" for a in node.names)
            else:
                out.add(node.module or "")
    return out


MODULES = {_module_name(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    if module == "expost.__main__":
        return "main"
    if len(parts) == 1 or parts[1].startswith("_"):
        return "core"
    return parts[1]  # nn, estimators, experiments, report, cli


def _violations(rule) -> list[str]:
    return [f"{m} imports {i}" for m, imps in MODULES.items() for i in sorted(imps) if rule(m, i)]


def _is(imported: str, *prefixes: str) -> bool:
    return any(imported == p or imported.startswith(p + ".") for p in prefixes)


def test_the_source_tree_is_read():
    assert {"expost", "expost.nn", "expost.estimators", "expost.experiments", "expost.report",
            "expost.cli", "expost._decisions"} <= set(MODULES)
    assert "expost._utility" in MODULES["expost._decisions"]  # relative imports resolve
    assert "torch" in MODULES["expost.experiments.train"]


def test_core_imports_no_heavy_package_and_no_upper_layer():
    bad = _violations(lambda m, i: _layer(m) == "core" and (
        _is(i, *HEAVY) or _is(i, "expost.nn", "expost.estimators", "expost.experiments",
                              "expost.report", "expost.cli")))
    assert bad == []


def test_nn_and_estimators_depend_on_the_core_only():
    upper = ("expost.experiments", "expost.report", "expost.cli")
    bad = _violations(lambda m, i: _layer(m) == "nn" and (
        _is(i, "sklearn", "matplotlib", "pydantic", "yaml", "expost.estimators", *upper)))
    bad += _violations(lambda m, i: _layer(m) == "estimators" and (
        _is(i, "torch", "matplotlib", "pydantic", "yaml", "expost.nn", *upper)))
    assert bad == []


def test_harness_never_imports_the_report_estimators_or_cli():
    bad = _violations(lambda m, i: _layer(m) == "experiments" and (
        _is(i, "matplotlib", "expost.report", "expost.estimators", "expost.cli")))
    assert bad == []


def test_report_reads_stored_numbers_only():
    allowed = ("expost.experiments.metrics", "expost.experiments.regimes",
               "expost.experiments.store", "expost.experiments.evaluate")
    bad = _violations(lambda m, i: _layer(m) == "report" and (
        _is(i, "torch", "expost.nn", "expost.estimators", "expost.cli")
        or (_is(i, "expost.experiments") and not _is(i, *allowed))))
    assert bad == []


def test_nothing_imports_the_command_line():
    bad = _violations(lambda m, i: _is(i, "expost.cli") and m not in ("expost.__main__",
                                                                        "expost.cli"))
    assert bad == []


def test_rules_catch_a_violation(monkeypatch):
    # the checks can fail: a core module that imported torch would be reported
    monkeypatch.setitem(MODULES, "expost._decisions", {"torch", "expost._utility"})
    with pytest.raises(AssertionError):
        test_core_imports_no_heavy_package_and_no_upper_layer()


# ---------------------------------------------------------------- the paper's index
def _index_rows() -> list[tuple[str, list[str]]]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Where the paper's results are implemented", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("paper", "---") or set(cells[0]) <= {"-"}:
            continue
        rows.append((cells[0], re.findall(r"`([\w.]+)`", cells[1])))
    return rows


def _labels(paper: str) -> list[str]:
    """``Eq 10-11 / Proposition 1`` -> ['Eq 10', 'Eq 11', 'Proposition 1']."""
    out = []
    for kind, first, last in re.findall(
            r"(Eq|Theorem|Lemma|Proposition|footnote|Figure|Table) (\d+)(?:-(\d+))?", paper):
        out += [f"{kind} {n}" for n in range(int(first), int(last or first) + 1)]
    out += re.findall(r"Appendix A\.\d", paper)
    return out


def _mentions(doc: str, label: str) -> bool:
    if label.startswith("Appendix"):
        return label.split()[1] in doc
    kind, number = label.split()
    if kind == "Eq":  # "Eq 17", "Eq 6, 15, 24", "Eqs 26/27", "Eq 16-18"
        for m in re.finditer(r"Eqs?\.? ?((?:\d+[a-z]?(?:\s*(?:-|–|,|/|and)\s*)?)+)", doc):
            nums = [int(n) for n in re.findall(r"\d+", m.group(1))]
            ranges = re.findall(r"(\d+)\s*[-–]\s*(\d+)", m.group(1))
            if int(number) in nums or any(int(a) <= int(number) <= int(b) for a, b in ranges):
                return True
        return False
    return re.search(rf"{kind}s? {number}\b", doc) is not None


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


INDEX = _index_rows()


def test_index_lists_the_paper_results():
    labels = {lab for paper, _ in INDEX for lab in _labels(paper)}
    for needed in ("Theorem 1", "Theorem 2", "Proposition 1", "Proposition 2", "Proposition 3",
                   "Lemma 1", "Eq 8", "Eq 21", "Eq 28"):
        assert needed in labels
    assert len(INDEX) >= 20


@pytest.mark.parametrize(("paper", "names"), INDEX, ids=[p.split(" (")[0] for p, _ in INDEX])
def test_index_entry_exists_and_says_so(paper, names):
    assert names, f"no function named for {paper}"
    docs = " ".join(inspect.getdoc(_resolve(n)) or "" for n in names)
    missing = [lab for lab in _labels(paper) if not _mentions(docs, lab)]
    assert missing == [], f"{names}: docstrings do not name {missing}"


def test_mentions_reads_equation_lists():
    assert _mentions("the loss (Eq 6, 15, 24)", "Eq 15")
    assert _mentions("Eqs 26/27 give", "Eq 27") and _mentions("(Eq 16-18)", "Eq 17")
    assert not _mentions("Eq 16 and Eq 18", "Eq 1") and not _mentions("Eq 210", "Eq 21")
