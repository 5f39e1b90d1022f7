"""Stage 11 — the pipeline: run the parameterized notebooks, in dependency order, into the book.

The command line, ``python -m salve_utils.pipeline`` (the first line above is its
``--help`` description)::

    python -m salve_utils.pipeline run --profile smoke            # run what is stale
    python -m salve_utils.pipeline run --profile cpu --only vit-imagenette.control -p control.strength_max=4
    python -m salve_utils.pipeline check --profile cpu            # validate only, in seconds
    python -m salve_utils.pipeline status --profile cpu           # what would run
    python -m salve_utils.pipeline toc --profile cpu              # the book's table of contents
    python -m salve_utils.pipeline errors --profile cpu           # chapters that hold an error output
"""

from __future__ import annotations

import argparse
import sys

from .book import write_toc
from .execute import error_outputs, run
from .kernels import _EXECUTOR_LOGGERS
from .graph import PipelineError, load_profile
from .planning import plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salve_utils.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, text in [("run", "run the stale nodes of a profile"), ("check", "validate graph, profile, parameters"),
                      ("status", "show which nodes would run")]:
        sp = sub.add_parser(cmd, help=text)
        sp.add_argument("--profile", default="smoke")
        sp.add_argument("-p", "--param", action="append", default=[], metavar="[[EDITION.]NODE.]NAME=VALUE",
                        help="override a parameter (YAML value): for every node declaring it, for one node "
                             "(in every edition) or for one edition's node")
        sp.add_argument("--only", metavar="NODE", help="run NODE (a node, an edition or a chain node) always, "
                                                       "and its stale descendants")
        sp.add_argument("--no-downstream", dest="downstream", action="store_false",
                        help="with --only: run only the named nodes, not their descendants")
        sp.add_argument("--force", action="store_true", help="re-execute even up-to-date nodes")
        sp.add_argument("--root", help="project root (default: found from the working directory)")
        if cmd == "run":
            sp.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                            help="stop a node whose cell runs longer than this (default: no limit)")
            sp.add_argument("--jobs", type=int, default=1, metavar="N",
                            help="run up to N ready nodes side by side (default 1); the same bytes, less wall "
                                 "time where a node leaves cores idle")
    sp = sub.add_parser("errors", help="list executed chapters that hold an error output")
    sp.add_argument("--profile", help="only this profile's chapters")
    sp = sub.add_parser("toc", help="write the book's table of contents for a profile")
    sp.add_argument("--profile", default="cpu")
    sp.add_argument("--out", default="_toc.yml", help="where to write it (default: _toc.yml)")
    sp.add_argument("--root", help="project root (default: found from the working directory)")
    args = parser.parse_args(argv)
    try:
        if args.command == "errors":
            bad = error_outputs(profile=args.profile)
            print("\n".join(bad) if bad else "no error outputs")
            return 1 if bad else 0
        if args.command == "toc":
            print(f"table of contents of profile {args.profile}: {write_toc(args.profile, args.out, args.root)}")
            return 0
        if args.command == "run":
            run(args.profile, args.root, args.param, args.only, args.force, downstream=args.downstream,
                cell_timeout=args.cell_timeout, jobs=args.jobs)
            return 0
        p = plan(args.profile, args.root, args.param, args.only, args.force, args.downstream)
        if args.command == "check":
            if load_profile(p.root, args.profile)["empty"]:
                print(f"warning: profile {args.profile} sets nothing; every node runs on its notebook's defaults",
                      file=sys.stderr)
            print(f"profile {args.profile}: {len(p.editions)} editions ({', '.join(p.editions)}), "
                  f"{len(p.order)} nodes, parameters valid")
        else:
            for n in p.order:
                state = "run" if n in p.stale else "current" if p.is_current(n) else "stale"
                print(f"{state:<8} {n:<34} notebooks/{p.nodes[n].notebook}")
        return 0
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        import logging

        # the executor's abandoned tasks report the kernel's shutdown when collected at exit
        for name in _EXECUTOR_LOGGERS:
            logging.getLogger(name).disabled = True
        print("\ninterrupted: the running node was not published; every published chapter, table and record is "
              "as before. Run the same command again to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
