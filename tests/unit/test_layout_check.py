"""scripts/check_layout.py, which `make lint` runs, finds what it is there to find."""

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_layout.py"


@pytest.fixture(scope="module")
def check_layout():
    spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_package(root: Path, name: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, source in modules.items():
        (root / name / f"{module}.py").write_text(textwrap.dedent(source))


def test_a_type_only_import_cycle_is_found(check_layout, tmp_path, monkeypatch):
    write_package(tmp_path, "cyclic_pkg", {
        "app": "from cyclic_pkg.metrics import Metrics\n",
        "metrics": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from cyclic_pkg.app import Services
            class Metrics: ...
        """,
        "free": "import cyclic_pkg.metrics\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cycles = check_layout.import_cycles("cyclic_pkg")
    finally:
        for name in [m for m in sys.modules if m.startswith("cyclic_pkg")]:
            del sys.modules[name]
    assert cycles == [["cyclic_pkg.app", "cyclic_pkg.metrics"]]


def test_the_project_has_no_cycle_and_no_oversized_module(check_layout):
    assert check_layout.import_cycles("service") == []
    assert check_layout.oversized(check_layout.MAX_MODULE_LINES) == []


def test_an_oversized_module_is_named(check_layout):
    biggest = max((path for folder, pattern in check_layout.SIZED
                   for path in (check_layout.ROOT / folder).rglob(pattern)),
                  key=lambda path: len(path.read_text().splitlines()))
    lines = len(biggest.read_text().splitlines())
    assert (biggest.relative_to(check_layout.ROOT), lines) in check_layout.oversized(lines - 1)
