"""A command plugin: its import appends a line to the file named by XAI_TEST_MARKER (when set), and it adds
the subcommand ``hello``; with XAI_TEST_COMMAND_ABORT set, its hook raises a BaseException after adding it."""

import os
from pathlib import Path

import xai_plugins

if os.environ.get("XAI_TEST_MARKER"):
    with Path(os.environ["XAI_TEST_MARKER"]).open("a") as marker:
        marker.write("imported\n")


class Abort(BaseException):
    """Not an Exception: only a catch of BaseException stops it."""


def hello(args):
    print(f"hello {args.who}")
    return 0


@xai_plugins.hookimpl
def xai_register_commands(commands):
    parser = commands.add_parser("hello", help="say hello (test command plugin)")
    parser.add_argument("who")
    parser.set_defaults(func=hello)
    if os.environ.get("XAI_TEST_COMMAND_ABORT"):
        raise Abort("command hook aborted on purpose")
