"""Plain-text tables for the terminal: columns padded to their widest cell, no dependencies."""

from __future__ import annotations

from collections.abc import Sequence

COLUMN_GAP = "  "


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns under an upper-case header line."""
    cells = [[str(header).upper() for header in headers]]
    cells += [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = [
        COLUMN_GAP.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)
