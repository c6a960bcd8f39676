"""Shell completion: ``plexinode completion bash|zsh|fish`` prints the script to load."""

from __future__ import annotations

import click

from plexinode.cli.output import emit

#: The environment variable through which the shell asks `plexinode` for completions (click's
#: convention: the program name, upper-cased, between ``_`` and ``_COMPLETE``).
COMPLETE_VAR = "_PLEXINODE_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command(short_help="Print the shell completion script (bash, zsh or fish).")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL. Load it from the shell's start-up file:

    \b
    bash:  eval "$(plexinode completion bash)"          (in ~/.bashrc)
    zsh:   eval "$(plexinode completion zsh)"           (in ~/.zshrc)
    fish:  plexinode completion fish > ~/.config/fish/completions/plexinode.fish
    """
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root().command
    shell_class = get_completion_class(shell)
    assert shell_class is not None  # one of SHELLS: click ships all three
    script = shell_class(root, {}, "plexinode", COMPLETE_VAR).source()
    emit({"shell": shell, "script": script}, script.rstrip("\n"))
