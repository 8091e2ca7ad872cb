#!/usr/bin/env python3
"""Generate the shell completions and the man page from the CLI definition.

    python scripts/gen_docs.py            # (re)write completions/ and man/
    python scripts/gen_docs.py --check    # exit 1 if the committed files are stale
    python scripts/gen_docs.py --out DIR  # write the tree under DIR instead of the repository

Nothing here is written by hand: the click command tree comes from
`typer.main.get_command(app)` and every command, option, env var, default and help text in
`man/swimctl.1` is read from it. The completion scripts are typer's own for prog name `swimctl`
and complete var `_SWIMCTL_COMPLETE`; at completion time they call back into `swimctl`, so
they never go stale for new options, only if typer's templates change.

The output is deterministic (no dates, no paths of this machine, stable order), so a test can
regenerate it and compare byte for byte (tests/test_generated_docs.py).
"""

from __future__ import annotations

import argparse
import enum
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import typer  # noqa: E402
import typer.main  # noqa: E402

from swimctl import __version__  # noqa: E402
from swimctl.cli.app import app  # noqa: E402

try:  # typer >= 0.16 vendors click as typer._click
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older typer with click as a dependency
    import click  # type: ignore[no-redef]

PROG = "swimctl"
COMPLETE_VAR = "_SWIMCTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")

#: Paths (relative to the output root) of every generated file.
OUTPUTS: tuple[str, ...] = (
    *(f"completions/{PROG}.{shell}" for shell in SHELLS),
    f"man/{PROG}.1",
)


# --------------------------------------------------------------------------- the command tree


@dataclass
class Node:
    """One command of the tree, with its click context (for help rendering)."""

    path: tuple[str, ...]
    command: Any  # click.Command (typer's vendored or the real one)
    ctx: Any  # click.Context
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def is_group(self) -> bool:
        return hasattr(self.command, "list_commands")


def command_tree() -> Node:
    """The root command with every (sub)command below it, in the CLI's own order."""
    root_cmd = typer.main.get_command(app)

    def build(cmd: Any, path: tuple[str, ...], parent: Any | None) -> Node:
        settings = dict(getattr(cmd, "context_settings", None) or {})
        ctx = click.Context(cmd, info_name=path[-1], parent=parent, **settings)
        node = Node(path, cmd, ctx)
        if node.is_group:
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not getattr(sub, "hidden", False):
                    node.children.append(build(sub, (*path, name), ctx))
        return node

    return build(root_cmd, (PROG,), None)


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def params(node: Node) -> list[Any]:
    """Visible parameters, including the help option click adds."""
    return [p for p in node.command.get_params(node.ctx) if not getattr(p, "hidden", False)]


def is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def _stable(names: list[str]) -> list[str]:
    # click keeps the help option's names in a set: order long names first, then by name.
    return sorted(names, key=lambda n: (not n.startswith("--"), n))


def option_names(param: Any) -> list[str]:
    """All the option's names in a stable order: the primary ones, then the secondary."""
    return _stable(list(param.opts)) + _stable(list(getattr(param, "secondary_opts", [])))


def primary_name(param: Any) -> str:
    return option_names(param)[0]


def envvars(param: Any) -> list[str]:
    env = getattr(param, "envvar", None)
    if env is None:
        return []
    return [env] if isinstance(env, str) else [str(e) for e in env]


def type_label(param: Any, ctx: Any) -> str:
    """`int`, `float range`, `a|b`, ... or the metavar if the command set one."""
    if getattr(param, "metavar", None):
        return str(param.metavar)
    if hasattr(param, "display_type"):  # typer >= 0.16
        return str(param.display_type(ctx)).strip("<>")
    return str(param.make_metavar(ctx) if param.param_type_name == "argument" else param.type.name)


def range_text(param: Any) -> str | None:
    getter = getattr(param, "_get_number_range_help_str", None)
    if getter is None:
        return None
    text = getter()
    return str(text) if text else None


def default_text(param: Any) -> str | None:
    """The default as the help shows it; None when there is nothing worth showing."""
    show = getattr(param, "show_default", None)
    if isinstance(show, str):
        return show
    if show is False:
        return None
    value = param.default
    if value is None or callable(value):
        return None
    if getattr(param, "is_flag", False):
        if getattr(param, "secondary_opts", None):
            return (param.opts if value else param.secondary_opts)[0]
        return None  # an unset flag is off: nothing to say
    if isinstance(value, list | tuple):
        if not value:
            return None
        return ", ".join(_scalar(v) for v in value)
    text = _scalar(value)
    return text if text != "" else '""'


def _scalar(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


# --------------------------------------------------------------------------- completions


def completion_script(shell: str) -> str:
    """Typer's completion script for `swimctl` (what `--show-completion` prints)."""
    try:
        from typer._completion_shared import get_completion_script
    except ImportError:  # pragma: no cover - typer moved it; fall back to click's classes
        from click.shell_completion import get_completion_class  # type: ignore[no-redef]

        cls = get_completion_class(shell)
        assert cls is not None, shell
        return cls(typer.main.get_command(app), {}, PROG, COMPLETE_VAR).source().strip() + "\n"
    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell) + "\n"


# --------------------------------------------------------------------------- roff

_ROFF_SPECIAL = re.compile(r"^([.'])", re.MULTILINE)


def roff(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and control characters at line starts."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return _ROFF_SPECIAL.sub(r"\\&\1", text)


def paragraphs(text: str | None) -> list[str]:
    """Help text split into paragraphs, click's `\\b` markers dropped, lines re-joined."""
    if not text:
        return []
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip() != "\b"]
        if lines:
            out.append(" ".join(lines))
    return out


def bold(text: str) -> str:
    return f"\\fB{roff(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{roff(text)}\\fR"


def short_help(node: Node) -> str:
    cmd = node.command
    if getattr(cmd, "short_help", None):
        return str(cmd.short_help)
    paras = paragraphs(cmd.help)
    return paras[0] if paras else ""


def synopsis(node: Node) -> str:
    parts = [bold(node.name), "[\\fIOPTIONS\\fR]"]
    for p in params(node):
        if is_option(p):
            continue
        label = (p.metavar or p.name or "ARG").upper()
        if p.nargs != 1:
            label += "..."
        parts.append(italic(label) if p.required else f"[{italic(label)}]")
    if node.is_group:
        parts.append(f"{italic('COMMAND')} [{italic('ARGS')}]...")
    return " ".join(parts)


def option_entry(param: Any, ctx: Any) -> list[str]:
    names = option_names(param)
    head = ", ".join(bold(n) for n in names)
    if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        head += " " + italic(type_label(param, ctx))
    lines = [".TP", head]
    body = [roff(p) for p in paragraphs(param.help)] or [""]
    facts = []
    if getattr(param, "multiple", False):
        facts.append("May be given more than once.")
    if param.required:
        facts.append("Required.")
    rng = range_text(param)
    if rng:
        facts.append(f"Range: {roff(rng)}.")
    default = default_text(param)
    if default is not None:
        facts.append(f"Default: {bold(default)}.")
    env = envvars(param)
    if env:
        facts.append(f"Environment: {', '.join(bold(e) for e in env)}.")
    first = body[0]
    if first and first[-1] not in ".!?)":
        first += "."
    if facts:
        first = (first + " " if first else "") + " ".join(facts)
    lines.append(first)
    for extra in body[1:]:
        lines += [".IP", extra]
    return lines


def argument_entry(param: Any, ctx: Any) -> list[str]:
    label = (param.metavar or param.name or "ARG").upper()
    text = " ".join(roff(p) for p in paragraphs(getattr(param, "help", None)))
    facts = [
        f"({roff(type_label(param, ctx))}{', required' if param.required else ''}"
        f"{', one or more' if param.nargs != 1 else ''})"
    ]
    return [".TP", italic(label), " ".join(x for x in (text, *facts) if x)]


def command_section(node: Node) -> list[str]:
    top = len(node.path) == 1
    if top:  # the root: its description is DESCRIPTION already
        out = [".SH OPTIONS", "Options of " + bold(PROG) + " itself, given before a command."]
    else:
        out = [f'.SH "{roff(node.name.upper())}"', synopsis(node), ".PP"]
        out += _join_paras(node.command.help)
    args = [p for p in params(node) if not is_option(p)]
    opts = [p for p in params(node) if is_option(p)]
    sub = ".SH" if top else ".SS"
    if args:
        out += [f"{sub} ARGUMENTS" if top else ".SS Arguments"]
        for p in args:
            out += argument_entry(p, node.ctx)
    if opts:
        out += [] if top else [".SS Options"]
        for p in opts:
            out += option_entry(p, node.ctx)
    if node.children:
        out += [f"{sub} COMMANDS" if top else ".SS Commands"]
        for child in node.children:
            out += [".TP", bold(child.name), roff(short_help(child))]
    return out


def _join_paras(text: str | None) -> list[str]:
    out: list[str] = []
    for i, para in enumerate(paragraphs(text)):
        if i:
            out.append(".PP")
        out.append(roff(para))
    return out


def env_index(root: Node) -> dict[str, list[tuple[str, str]]]:
    """Env var -> [(command, option)] for every option that reads one, in tree order."""
    index: dict[str, list[tuple[str, str]]] = {}
    for node in walk(root):
        for p in params(node):
            for env in envvars(p):
                index.setdefault(env, []).append((node.name, primary_name(p)))
    return dict(sorted(index.items()))


def render_man(root: Node) -> str:
    title = f'.TH {PROG.upper()} 1 "" "{PROG} {roff(__version__)}" "User Commands"'
    out = [
        '.\\" Generated by scripts/gen_docs.py from the CLI definition: do not edit by hand.',
        '.\\" Regenerate with: python scripts/gen_docs.py',
        title,
        ".SH NAME",
        f"{PROG} \\- {roff(short_help(root))}",
        ".SH SYNOPSIS",
    ]
    for i, node in enumerate(n for n in walk(root) if not n.children):
        if i:
            out.append(".br")
        out.append(synopsis(node))
    out += [".SH DESCRIPTION"]
    out += _join_paras(root.command.help)
    out += [
        ".PP",
        "Every command below is documented with all of its options. Options that can also be "
        "set from the environment name their variable; a value on the command line wins over "
        "the environment, which wins over the default.",
    ]
    for node in walk(root):
        out += command_section(node)

    out += [".SH ENVIRONMENT"]
    for env, uses in env_index(root).items():
        where = "; ".join(f"{bold(cmd)} {bold(opt)}" for cmd, opt in uses)
        out += [".TP", bold(env), f"Sets {where}."]
    out += [
        ".TP",
        bold(COMPLETE_VAR),
        "Set by the shell completion scripts when they call back into "
        f"{bold(PROG)}; not for interactive use.",
    ]

    out += [
        ".SH FILES",
        ".TP",
        italic("~/.local/share/swimctl/keys.db"),
        "The default key database (embedded SQLite, in the user data directory) when neither "
        f"{bold('--db')} nor {bold('SWIM_DB')} is given.",
        ".TP",
        italic("completions/swimctl.bash, completions/swimctl.zsh, completions/swimctl.fish"),
        "Shell completion scripts, in the source tree; install them where your shell loads "
        f"completions (or use {bold('swimctl --install-completion')}).",
        ".TP",
        italic("deploy/swimctl.service, deploy/nginx.conf"),
        "Example systemd unit and nginx reverse-proxy configuration, in the source tree.",
        ".SH EXIT STATUS",
        ".TP",
        bold("0"),
        "Success (for serve: a clean stop on SIGTERM or SIGINT).",
        ".TP",
        bold("1"),
        "An error: bad input, unknown key or program id, unreachable hub or database. One line "
        "starting with " + bold("swimctl: error:") + " is printed on standard error.",
        ".TP",
        bold("2"),
        "A usage error caught by the argument parser (unknown option, missing argument).",
        ".TP",
        bold("130"),
        "Interrupted (Ctrl-C) in a client command such as record, replay or tmi.",
        ".SH SEE ALSO",
        f"{bold('systemd.service')}(5), {bold('systemd.exec')}(5), {bold('journalctl')}(1), "
        f"{bold('nginx')}(8)",
        ".PP",
        "In the source tree: docs/operating.md, docs/deploy.md, docs/keys.md, docs/protocol.md, "
        "docs/client.md, docs/record\\-replay.md, docs/tmi.md, docs/detection.md.",
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- output


def generate() -> dict[str, str]:
    """Relative path -> content of every generated file."""
    files = {f"completions/{PROG}.{shell}": completion_script(shell) for shell in SHELLS}
    files[f"man/{PROG}.1"] = render_man(command_tree())
    assert tuple(files) == OUTPUTS
    return files


def write(out_dir: Path) -> list[Path]:
    written = []
    for rel, text in generate().items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def stale(out_dir: Path) -> list[str]:
    """Generated files that are missing or differ under out_dir."""
    bad = []
    for rel, text in generate().items():
        path = out_dir / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            bad.append(rel)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repo)")
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for rel in bad:
            print(f"stale: {rel}", file=sys.stderr)
        if bad:
            print("run: python scripts/gen_docs.py", file=sys.stderr)
        return 1 if bad else 0
    for path in write(args.out):
        print(path.relative_to(args.out) if path.is_relative_to(args.out) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
