"""The `factlearn` command: one subcommand per pipeline stage.

Each stage package has a light `cli.py` with `register(subparsers)`; heavy imports (torch,
transformers) happen inside the command functions so `--help` stays instant. Errors from bad input
(UserError) become one line on stderr and exit code 2, a process the machine killed (MachineFailure) one
line and exit code 1; Ctrl-C exits 130; `--debug` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from factlearn import __version__
from factlearn.errors import MachineFailure, UserError

# Stage modules, in pipeline order; each registers its own subcommands.
STAGE_MODULES = (
    "factlearn.models_cli",
    "factlearn.data.cli",
    "factlearn.train.cli",
    "factlearn.evaluate.cli",
    "factlearn.analyze.cli",
    "factlearn.run.cli",
    "factlearn.report.cli",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage mistakes print one line (plus the fix) and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}; see `{self.prog} --help`\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="factlearn",
        description="Teach a language model new facts by finetuning, and measure whether it learned facts "
        "or only word co-occurrence. Stages: data -> train -> eval -> probe/ablate -> run/report.",
    )
    parser.add_argument("--version", action="version", version=f"factlearn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in STAGE_MODULES:
        importlib.import_module(name).register(sub)
    # `factlearn run` ends with the report; run is the earlier stage, so the two are composed here.
    sub.choices["run"].set_defaults(write_report=_write_report, print_summary=_print_summary)
    return parser


def _write_report(run_dir):
    """The report files, then the report in the run's trackers (report_to), once per finished run."""
    from factlearn.report.build import build_report
    from factlearn.report.tracked import log_report

    results = build_report(run_dir)
    log_report(results, run_dir)
    return results


def _print_summary(run_dir, seconds, executed, reused) -> None:
    from factlearn.report.cli import print_summary

    print_summary(run_dir, seconds, executed, reused)


def main(argv: list[str] | None = None) -> int:
    from factlearn.processes import die_with_parent_if_asked

    die_with_parent_if_asked()  # a rank of a grid's sharded training cell ends with its launcher (run/sharded.py)
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2 if args.command is None and argv else 0
    debug = args.debug or os.environ.get("FACTLEARN_DEBUG") == "1"
    terminated = _interrupt_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if debug:
            raise
        print(f"factlearn: error: {e}", file=sys.stderr)
        return 2
    except MachineFailure as e:
        if debug:
            raise
        print(f"factlearn: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        # A path the user gave that is missing, unreadable or the wrong kind: the OS message names the path;
        # without a path it is not the user's input (e.g. a library bug) and keeps its traceback.
        if debug or not e.filename:
            raise
        target = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
        print(f"factlearn: error: {e.strerror or type(e).__name__}: {target}; check that the path exists, is a "
              "file or folder as expected, and is readable/writable (--debug shows the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("factlearn: interrupted; outputs already written are complete, partial ones were discarded",
              file=sys.stderr)
        return 143 if terminated else 130


class _Terminated(list):
    """Truthy once SIGTERM arrived (a list so the signal handler can mark it)."""


def _interrupt_on_sigterm() -> _Terminated:
    """SIGTERM (a scheduler's stop, `timeout`, `kill`) takes the same clean-up path as Ctrl-C.

    Without this Python dies at once and leaves a training run's work files behind. Exit code 143.
    """
    import signal

    flag = _Terminated()

    def handler(signum, frame):
        flag.append(signum)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, handler)
        except ValueError:  # main() called from a non-main thread (embedding); keep the default
            pass
    return flag
