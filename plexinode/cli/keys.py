"""The owner's keys: ``keys export FILE``, and what ``init --import FILE`` reads back.

``keys export`` reads the identity and the backup secret straight from the data dir, so it
works whether or not the node runs, and writes them sealed under a passphrase
(plexinode.security.export) to FILE: mode 0600, atomically, never over an existing file unless
``--force``. The passphrase comes from the first line of ``--passphrase-file F`` or, on a
terminal, from a hidden prompt (twice for an export, which refuses a mismatch).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from plexinode.cli.context import options
from plexinode.cli.output import emit
from plexinode.errors import PlexinodeError

if TYPE_CHECKING:
    from plexinode.security.export import OwnerKeys

#: The most a passphrase file may hold: its first line is the passphrase (at most
#: plexinode.security.export.MAX_PASSPHRASE_BYTES); only this much and one byte more is read.
MAX_PASSPHRASE_FILE_BYTES: Final = 4096

PASSPHRASE_FILE_HELP = (
    "Read the passphrase from the first line of F instead of asking for it (keep F private)."  # noqa: S105
)


def _interactive() -> bool:
    """Whether a person can be asked: standard input is a terminal."""
    return sys.stdin.isatty()


def _ask(prompt: str) -> str:
    return str(click.prompt(prompt, hide_input=True, err=True, default="", show_default=False))


def read_passphrase(source: Path | None, *, confirm: bool) -> bytes:
    """The passphrase, as bytes for plexinode.security.export: the first line of `source`, or
    asked for on the terminal (`confirm`: twice, and a mismatch is refused).

    Raises:
        PlexinodeError: `source` cannot be read, is too large or holds an empty first line;
            the passphrase is empty or too long; there is no terminal to ask on; the two
            entries differ.
    """
    from plexinode.security.export import passphrase_bytes

    if source is not None:
        try:
            with source.open("rb") as file:
                data = file.read(MAX_PASSPHRASE_FILE_BYTES + 1)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise PlexinodeError(f"cannot read the passphrase from {source}: {reason}") from None
        if len(data) > MAX_PASSPHRASE_FILE_BYTES:
            raise PlexinodeError(
                f"{source} is too large to be a passphrase file "
                f"({MAX_PASSPHRASE_FILE_BYTES} bytes at most)"
            )
        line = text.split("\n", 1)[0].removesuffix("\r")
        if not line:
            raise PlexinodeError(f"the first line of {source} is empty: it holds the passphrase")
        return passphrase_bytes(line)
    if not _interactive():
        raise PlexinodeError(
            "no passphrase: give --passphrase-file F, or run this in a terminal to be asked"
        )
    first = passphrase_bytes(_ask("Passphrase"))
    if confirm and passphrase_bytes(_ask("Passphrase again")) != first:
        raise PlexinodeError("the two passphrases differ: nothing was written")
    return first


def read_export(path: Path, passphrase_file: Path | None) -> OwnerKeys:
    """The keys in the export file `path`, opened with the passphrase (``init --import``).

    Raises:
        PlexinodeError: The file cannot be read or opened (each reason its own line).
    """
    from plexinode.security.export import MAX_FILE_BYTES, ExportError, open_sealed

    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PlexinodeError(f"cannot read {path}: {exc.strerror or exc}") from None
    passphrase = read_passphrase(passphrase_file, confirm=False)
    try:
        return open_sealed(data, passphrase)
    except ExportError as exc:
        raise type(exc)(f"{path}: {exc}") from None


@click.group()
def keys() -> None:
    """The owner's keys: export them to move this node's identity to a new machine."""


@keys.command("export")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="F",
    help=PASSPHRASE_FILE_HELP,
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def export_keys(file: Path, passphrase_file: Path | None, force: bool) -> None:
    """Write this node's identity and backup secret to FILE, sealed with a passphrase.

    Works whether or not the node runs. `plexinode init --import FILE` on a new machine makes
    it the same owner; it then joins its network by invite. Whoever holds FILE can try
    passphrases offline: choose a long one, and keep FILE and the passphrase apart.
    """
    import nacl.utils

    from plexinode.fsutil import atomic_write
    from plexinode.identity import load_identity_file
    from plexinode.security import export
    from plexinode.shards.secret import ensure_backup_secret

    g = options()
    identity = load_identity_file(g.data_dir)
    secret = ensure_backup_secret(g.data_dir)
    path = file.absolute()
    if path.exists() and not force:
        raise PlexinodeError(f"{path} already exists: refusing to overwrite it (--force does)")
    passphrase = read_passphrase(passphrase_file, confirm=True)
    data = export.seal(
        export.OwnerKeys(identity, secret),
        passphrase,
        salt=nacl.utils.random(export.SALT_BYTES),
        nonce=nacl.utils.random(export.NONCE_BYTES),
        limits=export.DEFAULT_LIMITS,
    )
    try:
        atomic_write(path, data, mode=0o600, overwrite=force)
    except FileExistsError:
        raise PlexinodeError(f"{path} already exists: refusing to overwrite it") from None
    except OSError as exc:
        raise PlexinodeError(f"cannot write {path}: {exc.strerror or exc}") from None
    emit(
        {"path": str(path)},
        lambda d: f"wrote the keys of node {identity.node_id} to {d['path']}",
    )
