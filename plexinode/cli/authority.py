"""A private network's authority from the command line: admin key files, grants, admissions
and revocations (``network admin-key generate``, ``network grant``, ``network admit``,
``network revoke``).

The CLI signs every statement itself, with the admin key file given by ``--admin-key`` (by
default the data dir's ``root.key``, which ``init --network`` made), and hands the node only
the signed statement (the admin commands ``authority_info`` and ``authority_submit``): the
running node never holds an admin key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from plexinode.cli.context import client, options
from plexinode.cli.nodeids import AmbiguousNodeId, node_id_argument
from plexinode.cli.output import emit
from plexinode.cli.readable import local_time, quoted
from plexinode.errors import IdentityError, PlexinodeError

#: ``network grant``'s roles (plexinode.net.certificates.ROLES).
ROLES = ("admin", "inviter", "member")
#: A public key's length in hex digits.
PUBLIC_KEY_DIGITS = 64

admin_key_option = click.option(
    "--admin-key",
    "admin_key",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The admin key file to sign with (default: root.key in the data dir).",
)


def _load_admin_key(path: Path | None) -> Any:
    from plexinode.security.admin_keys import ROOT_KEY_FILE, read_admin_key

    if path is None:
        path = options().data_dir / ROOT_KEY_FILE
        if not path.exists():
            raise IdentityError(
                f"no admin key: {path} does not exist (give the admin key file with "
                "--admin-key FILE)"
            )
    return read_admin_key(path)


def _authority(info: dict[str, Any]) -> Any:
    from plexinode.net.authority import Authority

    if not info["root"]:
        raise PlexinodeError(
            f"network {info['network']!r} has no root key: admin keys, grants and revocations "
            "are for private networks made with `plexinode init --network`"
        )
    return Authority(info["network"], bytes.fromhex(info["root"]))


def _submit(statement: Any) -> None:
    """Hand a signed statement to the node; a refusal is an error (exit 1)."""
    from plexinode.security.statements import encode_statement

    result = client().call("authority_submit", statements=[encode_statement(statement).hex()])
    if result["refused"]:
        raise PlexinodeError(f"the node refused it: {result['refused'][0]}")


def _subject(text: str) -> tuple[str, dict[str, Any]]:
    """A grant's subject: a public key (64 hex digits) or a node ID this node knows, with the
    network's details."""
    if is_public_key(text):
        return text.strip().lower(), client().call("authority_info")
    node_id = subject_argument(text, param_hint="SUBJECT")
    info = client().call("authority_info", node_id=node_id)
    return info["public_key"], info


def subject_argument(text: str, *, param_hint: str) -> str:
    """The whole node ID that `text` names (:func:`node_id_argument`), where a public key
    would do as well: a malformed one is a usage error that says all three forms."""
    from plexinode.identity import TEXT_LENGTH

    try:
        return node_id_argument(text, param_hint=param_hint)
    except AmbiguousNodeId:
        raise
    except click.BadParameter:
        digits = text.strip().lower()
        hexadecimal = bool(digits) and all(c in "0123456789abcdef" for c in digits)
        why = f" (it has {len(digits)} hex digits)" if hexadecimal else ""
        raise click.BadParameter(
            f"{param_hint} is a node ID ({TEXT_LENGTH} characters), a unique prefix of one "
            f"(8 or more), or a public key ({PUBLIC_KEY_DIGITS} hex digits), not "
            f"{quoted(text)}{why}",
            param_hint=param_hint,
        ) from None


def _admin_key_file(_ctx: click.Context, _param: click.Parameter, value: Path) -> Path:
    """Check ``admin-key generate FILE``: it must name a file (not ``''`` or a directory)."""
    if value.name in ("", ".."):
        raise click.BadParameter("expected the name of a file to make (such as admin.key)")
    return value


@click.group("admin-key", short_help="Admin key files: make one.")
def admin_key() -> None:
    """Admin key files, which sign a private network's grants and revocations."""


@admin_key.command("generate", short_help="Make a new admin key file.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), callback=_admin_key_file)
def admin_key_generate(file: Path) -> None:
    """Make a new admin key in FILE (never overwritten) and print its public key. The root
    key makes it an admin with `network grant admin PUBLIC_KEY`."""
    from plexinode.identity import Identity
    from plexinode.security.admin_keys import write_admin_key

    key = Identity.generate()
    write_admin_key(file, key)
    emit(
        {"file": str(file), "public_key": key.public_key.hex()},
        lambda d: str(d["public_key"]),
    )


def _grant(role: str, subject: str, admin_key_file: Path | None, expires: str | None) -> Any:
    from plexinode.config import parse_duration
    from plexinode.net.certificates import MAX_LIFETIME
    from plexinode.security.statements import make_grant

    lifetime = MAX_LIFETIME[role]
    if expires is not None:
        try:
            lifetime = int(parse_duration(expires))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
        if not 0 < lifetime <= MAX_LIFETIME[role]:
            days = MAX_LIFETIME[role] // 86_400
            article = "an" if role[0] in "aeiou" else "a"
            raise click.BadParameter(
                f"{article} {role} grant runs above 0 and at most {days}d",
                param_hint="--expires",
            )
    key = _load_admin_key(admin_key_file)
    public_key, info = _subject(subject)
    grant = make_grant(
        key,
        _authority(info),
        bytes.fromhex(public_key),
        role,
        now=int(time.time()),
        lifetime=lifetime,
    )
    _submit(grant)
    return grant


@click.command("grant", short_help="Give a key a role: admin, inviter or member.")
@click.argument("role", type=click.Choice(ROLES), metavar="ROLE")
@click.argument("subject")
@admin_key_option
@click.option("--expires", default=None, metavar="DURATION", help="Default: the role's longest.")
def grant(role: str, subject: str, admin_key: Path | None, expires: str | None) -> None:
    """Give SUBJECT ROLE in this network, signed with an admin key. ROLE is admin, inviter or
    member; only the root key grants admin. SUBJECT is a node ID, a unique prefix of one (8
    characters or more), or a public key (64 hex digits)."""
    granted = _grant(role, subject, admin_key, expires)
    emit(
        {
            "public_key": granted.subject.hex(),
            "role": role,
            "expires": granted.expires_at,
            "granted": True,
        },
        lambda d: f"granted {d['role']} to {d['public_key']} until {local_time(d['expires'])}",
    )


@click.command("admit", short_help="Admit NODE_ID as a member (its admission certificate).")
@click.argument("node_id")
@admin_key_option
@click.option("--expires", default=None, metavar="DURATION", help="Default: 400d, the longest.")
def admit(node_id: str, admin_key: Path | None, expires: str | None) -> None:
    """Admit NODE_ID as a member of this private network (or renew its admission), signed with
    an admin key."""
    node_id = node_id_argument(node_id, param_hint="NODE_ID")
    granted = _grant("member", node_id, admin_key, expires)
    emit(
        {"node_id": node_id, "admitted": True, "expires": granted.expires_at},
        lambda d: f"admitted {d['node_id']} until {local_time(d['expires'])}",
    )


def delegate_inviting(admin_key_file: Path, lifetime: int) -> None:
    """``invite --admin-key``: sign, with the admin key, an inviter grant for the node's own key
    that runs as long as the ticket, so that the node may admit its joiner."""
    node_id = client().call("id")["node_id"]
    _grant("inviter", node_id, admin_key_file, f"{lifetime}s")


def is_public_key(text: str) -> bool:
    """Whether `text` is a public key (64 hex digits) rather than a node ID."""
    digits = text.strip().lower()
    return len(digits) == PUBLIC_KEY_DIGITS and all(c in "0123456789abcdef" for c in digits)


def revoke_with_key(subject: str, admin_key_file: Path | None, void: bool) -> dict[str, Any]:
    """``network revoke``: sign the revocation of `subject` (a node ID, or a public key such as
    an admin key file's) with an admin key and submit it."""
    from plexinode.identity import NodeId
    from plexinode.security.statements import make_revocation

    public_key, info = _subject(subject)
    authority = _authority(info)
    by_key = is_public_key(subject)
    node_id = str(NodeId.from_public_key(bytes.fromhex(public_key))) if by_key else subject
    if node_id == client().call("id")["node_id"]:
        raise PlexinodeError("a node cannot revoke itself: run `plexinode leave` instead")
    key = _load_admin_key(admin_key_file)
    revocation = make_revocation(
        key, authority, bytes.fromhex(public_key), int(time.time()), void=void
    )
    _submit(revocation)
    result: dict[str, Any] = {"node_id": node_id, "revoked": True}
    if by_key:
        result["public_key"] = public_key
    return result
