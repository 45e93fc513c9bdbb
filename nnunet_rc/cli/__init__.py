"""``nnunet-rc``: the command line.

Each sub-command lives in a module ``cmd_<name>.py`` of this package that defines ``COMMAND`` (the
name), ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; modules are found
automatically. Heavy imports (nnU-Net, torch) stay inside ``run`` so ``nnunet-rc --help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional

__all__ = ["main", "build_parser"]


def _command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            yield importlib.import_module(f"{__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    from nnunet_rc import __version__

    parser = argparse.ArgumentParser(
        prog="nnunet-rc",
        description="Single-source domain generalization for nnU-Net v2 (Random Convolutions, RAS4DG, ...).")
    parser.add_argument("--version", action="version", version=f"nnunet-rc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(module.COMMAND, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
