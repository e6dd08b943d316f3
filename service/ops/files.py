"""Writing the files other processes read while we write them (nginx's upstream on a
reload, the health watcher's marks, the secrets): whole or not at all."""

from __future__ import annotations

from pathlib import Path


def write_whole(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` to a temporary file beside `path` and rename it over `path`: a reader
    sees the old file or the new one, never half of one. `mode` is set before the text."""
    temporary = path.with_name(f".{path.name}.tmp")
    if mode is not None:
        temporary.touch(mode=mode)
        temporary.chmod(mode)
    temporary.write_text(text)
    temporary.replace(path)
