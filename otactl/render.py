"""Human output: aligned tables and the campaign progress bar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Update states that no longer move (the vehicle's outcome is known).
FINISHED_STATES = ("succeeded", "failed", "rolled_back", "cancelled")
BAR_WIDTH = 30


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def page_footer(body: dict[str, Any]) -> str:
    """'50 of 255; next page: --cursor ...' (or --offset, whichever the server pages by)."""
    shown = len(body.get("results", []))
    total = body.get("count", shown)
    # A filter on ECUs stops counting at a cap (count_exact false): say so, not a false total.
    footer = (
        f"{shown} of {total}" if body.get("count_exact", True) else f"{shown} of more than {total}"
    )
    query = parse_qs(urlsplit(body.get("next") or "").query)
    for option in ("cursor", "offset"):
        if query.get(option):
            footer += f"; next page: --{option} {query[option][0]}"
    return footer


def progress(campaign: dict[str, Any]) -> tuple[int, int]:
    """(vehicles whose outcome is known, vehicles in the campaign)."""
    counts = campaign.get("counts") or {}
    total = sum(counts.values())
    return sum(counts.get(state, 0) for state in FINISHED_STATES), total


def progress_line(campaign: dict[str, Any]) -> str:
    done, total = progress(campaign)
    ratio = done / total if total else 1.0
    filled = round(ratio * BAR_WIDTH)
    counts = campaign.get("counts") or {}
    detail = ", ".join(f"{state} {count}" for state, count in sorted(counts.items()) if count)
    return (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {ratio * 100:5.1f}% "
        f"{done}/{total} vehicles  {campaign.get('status')}" + (f"  ({detail})" if detail else "")
    )
