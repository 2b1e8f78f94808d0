"""The CLI reference, generated from the Typer app every time the site is built (so it cannot go stale).

mkdocs runs `on_files` (mkdocs.yml: `hooks:`), which adds the page reference/cli.md made by
`cli_reference()`: every command and sub-command of `mocohd` (plugins' commands included), its usage,
its help and each argument and option as `mocohd COMMAND --help` lists it (the app's own help records,
walked from `typer.main.get_command(app)`). tests/test_docs_site.py calls `cli_reference()` and checks that
every command and option is there.
"""
from __future__ import annotations

import re

PAGE = "reference/cli.md"


_MARKUP = re.compile(r"\[/?(?:bold|dim|italic|underline|red|green|yellow|blue|cyan|magenta)\]")


def _cell(text: str) -> str:
    text = _MARKUP.sub("", " ".join(text.split()))  # rich markup of the help, if any
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def walk(command, path: tuple[str, ...], parent=None):
    """(path, command, context) of `command` and of every command below it, in the order --help lists them."""
    import typer

    ctx = typer.Context(command, info_name=path[-1], parent=parent, resilient_parsing=True)
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from walk(sub, path + (name,), ctx)


def root_command():
    import typer

    from mocohd_cli.cli import app

    return typer.main.get_command(app)


def cli_reference() -> str:
    """The markdown of the CLI reference page."""
    lines = ["# Command-line reference", "",
             "Generated from the `mocohd` command itself each time this site is built "
             "(`docs/hooks/cli_reference.py`): what `mocohd COMMAND --help` says, for every command. "
             "The task pages say how to use them.", ""]
    for path, command, ctx in walk(root_command(), ("mocohd",)):
        name = " ".join(path)
        lines += [f"{'#' * min(len(path) + 1, 4)} `{name}`", ""]
        text = (command.help or "").replace("\b", "").strip()
        if text:
            lines += [text, ""]
        usage = " ".join([name, *command.collect_usage_pieces(ctx)])
        lines += ["```text", usage, "```", ""]
        panels: dict[str, list[tuple[str, str]]] = {}  # the help panels --help shows, in its order
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record:
                default = "Arguments" if getattr(param, "param_type_name", "") == "argument" else "Options"
                panels.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
        for panel, records in panels.items():
            if len(panels) > 1:
                lines += [f"**{panel}**", ""]
            lines += ["| argument or option | what it does |", "| --- | --- |"]
            lines += [f"| `{names}` | {_cell(help_text)} |" for names, help_text in records]
            lines.append("")
    return "\n".join(lines) + "\n"


def on_files(files, config):  # mkdocs hook: the page exists only in the built site
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files
