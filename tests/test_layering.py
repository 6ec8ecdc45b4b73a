"""Imports point one way (the data flow shows in the layout): a module imports only from
lower layers or from its own package, so there is no import cycle between packages and no upward
arrow (report/ -> run/catalog, demo -> cli, a recipe -> tune). Imports inside functions count too:
a lazy import is still a dependency. A new top-level module or package must be placed here."""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "recplat"

LAYERS = [
    {"recplat", "errors"},
    {"config", "storage", "runtime", "peak_memory", "tracking"},  # typed configs; atomic writes; Ray start-up; memory; MLflow
    {"preflight"},  # driver-side checks before Ray starts
    {"adapters", "data", "train"},  # peft helpers; data plane; training spine
    {"models"},
    {"eval"},
    {"runs", "tune.space"},  # run layout, typed run references and summaries; the tune: section's schema
    {"recipes", "report"},  # one module per method; tables and plots from run.json
    {"catalog"},  # jobs/*.yaml -> JobSpec
    {"run"},  # plan -> prepare -> execute -> record
    {"tune", "demo", "submit"},  # what drives runs
    {"cli"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _package_of(module: str) -> str:
    """recplat.eval.metrics -> eval; recplat -> recplat."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _unit_of(module: str) -> str:
    """The LAYERS entry a module belongs to: a module listed on its own (tune.space: plain config
    models the catalog validates a profile's tune: section with), else its package."""
    own = ".".join(module.split(".")[1:3])
    return own if own in LAYER else _package_of(module)


def _imports() -> dict[str, set[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                raise AssertionError(f"{module}: relative import; the project writes `from recplat... import`")
        found[module] = {n for n in names if n == "recplat" or n.startswith("recplat.")}
    return found


def test_every_package_has_a_layer():
    packages = {_package_of(m) for m in _imports()}
    assert packages - set(LAYER) == set(), "place new top-level modules in tests/test_layering.py LAYERS"


def test_imports_point_down():
    upward = []
    for module, imported in _imports().items():
        own = _unit_of(module)
        for name in imported:
            other = _unit_of(name)
            if _package_of(name) != _package_of(module) and LAYER.get(other, -1) >= LAYER.get(own, -1):
                upward.append(f"{module} imports {name} (layer {LAYER.get(other)} >= {LAYER.get(own)})")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk itself: an import of recplat.run from report/ is flagged."""
    fake = tmp_path / "recplat"
    (fake / "report").mkdir(parents=True)
    (fake / "report" / "x.py").write_text("def f():\n    from recplat.run import RUN_FILE\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _imports() == {"recplat.report.x": {"recplat.run"}}
    try:
        test_imports_point_down()
    except AssertionError as exc:
        assert "recplat.report.x imports recplat.run" in str(exc)
    else:
        raise AssertionError("the upward import was not flagged")
