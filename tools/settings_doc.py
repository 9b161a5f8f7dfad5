"""Print the README's settings tables from the settings table (gameserver/settings_table.py).

``python tools/settings_doc.py`` prints them; ``--write`` replaces the block between the
``<!-- settings:begin -->`` and ``<!-- settings:end -->`` markers in README.md. The test
``tests/test_settings_doc.py`` fails when the README and the code disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gameserver.settings import SERVE_SETTINGS, Kind, Setting

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = {
    "network": "Network and TLS",
    "auth": "Authentication",
    "game": "Games",
    "limits": "Limits",
    "cluster": "Cluster: workers and the room directory",
    "metrics": "Metrics and logging",
}


def _default(s: Setting) -> str:
    if s.note.startswith("default: "):
        return s.note.removeprefix("default: ")
    if s.default is None or s.default == ():
        return "none"
    if s.kind is Kind.BOOL:
        return "off" if not s.default else "on"
    return f"`{s.default}`"


def _range(s: Setting) -> str:
    if s.lo is None and s.hi is None:
        return "repeatable" if s.repeatable else ""
    return s.range_text()


def tables() -> str:
    out: list[str] = []
    for key, title in SECTIONS.items():
        out += [
            f"**{title}**",
            "",
            "| flag | default | allowed | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for s in SERVE_SETTINGS:
            if s.section == key:
                out.append(f"| `{s.flag}` | {_default(s)} | {_range(s)} | {s.help} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def replace_block(text: str, block: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    if args.write:
        README.write_text(replace_block(README.read_text(), tables()))
    else:
        sys.stdout.write(tables())
    return 0


if __name__ == "__main__":
    sys.exit(main())
