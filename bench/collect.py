"""Assemble docs/BENCHMARKS.md from the result files the benchmarks write under bench/results/.

Run each benchmark (its command line heads its section), then `python bench/collect.py`.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Order of the sections: transport first, then what travels over it, then faults.
SECTIONS = [
    "tls.md",
    "packages.md",
    "metadata.md",
    "api.md",
    "inventory.md",
    "mqtt.md",
    "retention.md",
    "fleet.md",
    "scale_out.md",
    "reliability.md",
]

INTRO = """# Benchmarks

Every benchmark compares against a reference measured in the same run on the same machine (a
classical TLS handshake, the `zstd` command-line tool, bsdiff, a plain file server, a bare MQTT
subscriber, a trivial endpoint) and reports the ratio, because absolute numbers on a shared
2-CPU machine move with its load. Each section names the command that produced it; the
sections below are the files in `bench/results/`, assembled by `python bench/collect.py`.

| benchmark | command | target | result |
|---|---|---|---|
{summary}
"""


def _demote(markdown: str) -> str:
    """Shift every heading one level down so each file becomes a section of this document."""
    lines = []
    for line in markdown.splitlines():
        lines.append("#" + line if line.startswith("#") else line)
    return "\n".join(lines)


def build(summary_rows: list[str]) -> str:
    parts = [INTRO.format(summary="\n".join(summary_rows))]
    for name in SECTIONS:
        path = RESULTS / name
        if path.exists():
            parts.append(_demote(path.read_text().strip()))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    summary_file = RESULTS / "summary.txt"
    rows = summary_file.read_text().strip().splitlines() if summary_file.exists() else []
    (ROOT / "docs" / "BENCHMARKS.md").write_text(build(rows))


if __name__ == "__main__":
    main()
