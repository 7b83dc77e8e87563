"""`python -m remediate.lab.asterisk --dir DIR [--scenario NAME]`: the lab's Asterisk host."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from remediate.lab.asterisk.host import run
from remediate.lab.layout import SCENARIOS, load_layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remediate.lab.asterisk", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="the lab directory (lab.json)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="default: from lab.json")
    options = parser.parse_args(argv)
    layout, scenario = load_layout(options.dir)
    return run(layout, options.scenario or scenario)


if __name__ == "__main__":
    sys.exit(main())
