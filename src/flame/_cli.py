"""The ``flame`` command line: ``flame local`` and ``flame demo``.

Each subcommand lives beside the code it drives and exposes two functions,
``configure(parser)`` and ``run(args) -> int``; this module only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "local": ("flame.local._command", "run an embedded Flame cluster on this machine"),
    "demo": ("flame._demo", "estimate pi with many tasks on an embedded (or given) cluster"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flame", description="The Flame SDK's command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.configure(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
