"""Where in a TOML file a setting was written, so a config error can say ``file:line``.

Best effort, without a TOML parser that keeps positions: ``[table]`` and ``[[array]]``
headers are tracked (array elements counted) together with ``key =`` lines, and
multi-line strings are skipped.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["find_line"]

_HEADER_RE = re.compile(r"\s*(\[\[?)([^\[\]]+)(\]\]?)\s*(?:#.*)?")
_KEY_PART = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_KEY_RE = re.compile(rf"\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in re.findall(_KEY_PART, text))


def find_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of ``loc`` (``("sinks", 1, "url")``) in TOML ``text``.

    Tracks ``[table]`` / ``[[array]]`` headers (counting array elements) and
    ``key =`` lines, then returns the line of the longest entry that is a prefix of
    ``loc``: the key itself, else its table header, else the enclosing key.
    """
    target = tuple(loc)
    arrays: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    best: tuple[int, int] | None = None  # (length, line)
    in_string = False

    def consider(path: tuple[Any, ...], line: int) -> None:
        nonlocal best
        if target[: len(path)] == path and (best is None or len(path) > best[0]):
            best = (len(path), line)

    def resolve(parts: tuple[str, ...]) -> tuple[Any, ...]:
        out: tuple[Any, ...] = ()
        for part in parts:
            out = (*out, part)
            if out in arrays:
                out = (*out, arrays[out])
        return out

    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:
            in_string = (line.count('"""') + line.count("'''")) % 2 == 0
            continue
        header = _HEADER_RE.fullmatch(line)
        if header and len(header.group(1)) == len(header.group(3)):
            parts = _split_key(header.group(2))
            if not parts:
                continue
            if header.group(1) == "[[":
                base = (*resolve(parts[:-1]), parts[-1])
                arrays[base] = arrays.get(base, -1) + 1
                table = (*base, arrays[base])
            else:
                table = resolve(parts)
            consider(table, number)
            continue
        key = _KEY_RE.match(line)
        if key:
            consider((*table, *_split_key(key.group(1))), number)
            in_string = (line.count('"""') + line.count("'''")) % 2 == 1
    return best[1] if best else None
