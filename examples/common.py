"""Shared plumbing for the example programs: connection flags and a bounded run.

Kept tiny so each example reads on its own; copy `parser()` into your program if you like.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable

import trio

DEFAULT_URL = "ws://127.0.0.1:8090/api/swim/v1/ws"


def parser(description: str) -> argparse.ArgumentParser:
    """`--url`/`--key` (or SWIM_URL / SWIM_API_KEY) plus the bounds tests and demos use."""
    # Line-buffered output, so a pipe (a test, `| grep`) sees each line as it is printed.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", default=os.environ.get("SWIM_URL", DEFAULT_URL),
                   help="hub URL (env SWIM_URL)")
    # Prefer the variable: command-line arguments are visible to every user in `ps`.
    p.add_argument("--key", default=os.environ.get("SWIM_API_KEY"),
                   help="API key (env SWIM_API_KEY)")
    p.add_argument("--max-events", type=int, default=0,
                   help="stop after this many stream events (0: no limit)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0: run until Ctrl-C)")
    return p


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    args = p.parse_args()
    if not args.key:
        p.error("an API key is needed: --key or SWIM_API_KEY")
    return args


def deadline(args: argparse.Namespace) -> float:
    """Seconds for trio.move_on_after: infinity when no --duration was given."""
    return args.duration if args.duration > 0 else float("inf")


def split_list(text: str | None) -> list[str] | None:
    """`KJFK,KBOS` → ["KJFK", "KBOS"]; None/empty → None (no filter)."""
    if not text:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def run(main: Callable[[], Awaitable[None]]) -> None:
    """trio.run(main), ending quietly the way command-line tools do: when the reader of our
    output goes away (`example.py | head -3`) and on Ctrl-C, without a traceback."""
    try:
        trio.run(main)
    except BrokenPipeError:
        # Point stdout at /dev/null so Python's own flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        sys.exit(130)
