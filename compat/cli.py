"""The `irshim` command."""

from __future__ import annotations

import argparse
import sys

SUBCOMMANDS = {
    "demo": "run a small model in shadow mode and write a migration report",
    "report": "aggregate observation logs into migration_reports/<run>/report.{md,json,html}",
    "status": "show the dispatch mode, IR ops, providers and priorities",
    "scan": "list the CustomOp subclasses of modules: the porting to-do list",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="irshim", description="Migrate CustomOps to irshim's functional IR.")
    parser.add_argument("command", choices=sorted(SUBCOMMANDS), help="; ".join(f"{k}: {v}" for k, v in SUBCOMMANDS.items()))
    args, _rest = parser.parse_known_args(argv)
    print(f"irshim {args.command}: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
