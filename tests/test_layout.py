"""The package's layout holds: faces export what they name, imports run one way, and
importing fer_sweep loads nothing heavy."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_sweep"

# The architecture, bottom up: a module may import from its own layer's units and below,
# never from above. Leaves hold constants, exception types and settings.
LAYERS = [
    {"errors", "redact", "fer2013", "metric_names", "settings", "backend", "outcomes"},
    {"config"},
    {"thesis", "data"},
    {"model"},
    {"training"},
    {"search"},
    {"tracking"},
    {"lifecycle"},
    {"reporting"},
    {"cli", "__main__", "__init__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def _unit(module: str) -> str:
    """The unit of ``fer_sweep.x.y``: ``x`` (a subpackage or a leaf module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Every ``fer_sweep`` import of a file, at any depth: (line, module, names)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fer_sweep"):
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("fer_sweep")]
    return out


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        yield path, ".".join(rel.parts).removesuffix(".__init__")


def test_every_unit_has_a_layer():
    units = {_unit(m) for _, m in _modules()}
    assert units <= set(LAYER), sorted(units - set(LAYER))


def test_imports_run_down_the_layers_and_into_faces_only():
    wrong = []
    for path, module in _modules():
        mine = _unit(module)
        for line, target, names in _imports(path):
            theirs = _unit(target) if target != "fer_sweep" else None
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if theirs is None:  # `from fer_sweep import x`: x is a unit
                if mine == "__init__":
                    continue
                for name in names:
                    if LAYER.get(name, -1) > LAYER[mine]:
                        wrong.append(f"{where}: {mine} imports {name}, a layer above")
                continue
            if LAYER[theirs] > LAYER[mine]:
                wrong.append(f"{where}: {mine} imports {target}, a layer above")
            private = any(part.startswith("_") for part in target.split(".")[2:])
            if theirs != mine and private:
                wrong.append(f"{where}: {target} is private to fer_sweep.{theirs}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_face_exports_what_it_names(name):
    face = importlib.import_module(f"fer_sweep.{name}")
    assert face.__all__, f"fer_sweep.{name} exports nothing"
    for attr in face.__all__:
        assert getattr(face, attr) is not None


def test_the_notebook_api_resolves():
    import fer_sweep

    for attr in fer_sweep.__all__:
        assert getattr(fer_sweep, attr) is not None
    assert callable(fer_sweep.train) and callable(fer_sweep.run_sweep)


def test_importing_the_package_and_its_light_names_loads_no_heavy_library():
    # Keras picks its backend when it is first imported: fer_sweep must not import it before
    # the CLI (or a notebook) has set KERAS_BACKEND; a sweep's --plan needs none of these.
    probe = (
        "import json, sys, fer_sweep\n"
        "fer_sweep.TrainConfig, fer_sweep.load_config, fer_sweep.load_sweep, fer_sweep.UserError\n"
        "from fer_sweep.search import make_plan\n"
        "print(json.dumps([m for m in ('keras', 'tensorflow', 'jax', 'mlflow', 'h5py')"
        " if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == []
