"""Keeps the layout honest (run by `make lint`): no import cycle between the modules of
`service` (imports made only for type checking included), and no module over the size
limit, Python or the page's JavaScript. The direction between subpackages is checked by
import-linter (.importlinter)."""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 300
SIZED = [("service", "*.py"), ("static/js", "*.js")]


def import_cycles(package: str) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    graph = grimp.build_graph(package, exclude_type_checking_imports=False)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def oversized(limit: int) -> list[tuple[Path, int]]:
    found = []
    for folder, pattern in SIZED:
        for path in sorted((ROOT / folder).rglob(pattern)):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found.append((path.relative_to(ROOT), lines))
    return found


def main() -> int:
    problems = [f"import cycle: {' <-> '.join(group)}" for group in import_cycles("service")]
    problems += [f"{path}: {lines} lines, over {MAX_MODULE_LINES}: split it by responsibility"
                 for path, lines in oversized(MAX_MODULE_LINES)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"layout: no import cycle, no module over {MAX_MODULE_LINES} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
