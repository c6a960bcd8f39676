"""Node identity: the Ed25519 key pair, node IDs and their one text form.

A node ID is the BLAKE2b-256 hash of the node's Ed25519 public key, so nobody can pick an ID:
to sit at a chosen point of the ID space one would have to find a key whose hash lands there.

The text form of a node ID is lowercase RFC 4648 base32 (no padding) of the 32 ID bytes
followed by a 4-byte BLAKE2b checksum: 58 characters. Decoding is case-insensitive and ignores
dashes and spaces; a mistyped character fails the checksum with a clear error instead of naming
some other node.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nacl.exceptions
import nacl.public
import nacl.signing

from plexinode.errors import AuthenticationError, IdentityError
from plexinode.fsutil import atomic_write

log = logging.getLogger(__name__)

NODE_ID_BYTES: Final = 32
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
_CHECKSUM_BYTES: Final = 4
_CHECKSUM_PERSON: Final = b"plexinode-id-cs"
_ID_PERSON: Final = b"plexinode-nodeid"
_PUZZLE_PERSON: Final = b"plexinode-idpuz"
#: Largest ID puzzle difficulty a network may set: 2**32 key pairs is days of work already.
MAX_ID_DIFFICULTY: Final = 32
TEXT_LENGTH: Final = 58
SEED_BYTES: Final = 32
KEY_FILE_NAME: Final = "identity.key"
_KEY_FILE_VERSION: Final = 1


def _checksum(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=_CHECKSUM_BYTES, person=_CHECKSUM_PERSON).digest()


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """A 256-bit node identifier, derived from a public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != NODE_ID_BYTES:
            raise IdentityError(f"a node ID is {NODE_ID_BYTES} bytes")

    @classmethod
    def from_public_key(cls, public_key: bytes) -> NodeId:
        """The node ID of an Ed25519 public key."""
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise IdentityError(f"a public key is {PUBLIC_KEY_BYTES} bytes")
        digest = hashlib.blake2b(public_key, digest_size=NODE_ID_BYTES, person=_ID_PERSON)
        return cls(digest.digest())

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """Parse the text form; raises IdentityError with the reason when it is not valid."""
        cleaned = "".join(text.split()).replace("-", "").upper()
        if len(cleaned) != TEXT_LENGTH:
            raise IdentityError(
                f"invalid node ID {text!r}: expected {TEXT_LENGTH} characters, got {len(cleaned)}"
            )
        try:
            decoded = base64.b32decode(cleaned + "======")
        except (binascii.Error, ValueError):
            raise IdentityError(
                f"invalid node ID {text!r}: only letters a-z and digits 2-7 are allowed"
            ) from None
        raw, checksum = decoded[:NODE_ID_BYTES], decoded[NODE_ID_BYTES:]
        node_id = cls(raw)
        # The last character carries two unused bits: only the canonical spelling is valid, so
        # that every typo is caught, not just those the checksum sees.
        if _checksum(raw) != checksum or str(node_id) != cleaned.lower():
            raise IdentityError(f"invalid node ID {text!r}: checksum mismatch (mistyped?)")
        return node_id

    def __str__(self) -> str:
        text = base64.b32encode(self.raw + _checksum(self.raw)).decode("ascii")
        return text.rstrip("=").lower()

    def __repr__(self) -> str:
        return f"NodeId({str(self)[:12]}…)"

    def short(self) -> str:
        """The first 12 characters of the text form, for logs."""
        return str(self)[:12]

    def meets(self, difficulty: int) -> bool:
        """Whether this ID solves the network's ID puzzle (S/Kademlia's static puzzle).

        The puzzle: BLAKE2b-256 of the node ID (itself the hash of the public key) starts with
        `difficulty` zero bits. Anyone checks it from the ID alone with one hash, while making
        an ID that solves it takes about 2**difficulty key pairs, so identities cost work.
        """
        if difficulty <= 0:
            return True
        digest = hashlib.blake2b(self.raw, digest_size=NODE_ID_BYTES, person=_PUZZLE_PERSON)
        return int.from_bytes(digest.digest(), "big") >> (NODE_ID_BYTES * 8 - difficulty) == 0


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature; raises AuthenticationError when it is not valid."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        raise AuthenticationError("bad signature") from None


class Identity:
    """A node's long-term Ed25519 key pair."""

    __slots__ = ("_signing_key", "node_id", "public_key")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)
        self.node_id = NodeId.from_public_key(self.public_key)

    @classmethod
    def generate(cls, difficulty: int = 0) -> Identity:
        """A fresh random identity whose node ID solves the ID puzzle of `difficulty` bits.

        Takes about 2**difficulty key pairs (some 50 µs each): 16 bits is a few seconds.
        """
        if not 0 <= difficulty <= MAX_ID_DIFFICULTY:
            raise ValueError(f"ID difficulty must be within 0..{MAX_ID_DIFFICULTY}")
        while True:
            identity = cls(nacl.signing.SigningKey.generate())
            if identity.node_id.meets(difficulty):
                return identity

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity of a 32-byte seed (deterministic; used by simulations)."""
        return cls(nacl.signing.SigningKey(seed))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of `message`."""
        return bytes(self._signing_key.sign(message).signature)

    def unseal(self, sealed: bytes) -> bytes:
        """Open what :func:`seal_to` sealed to this identity's public key.

        Raises:
            AuthenticationError: It was sealed to another key, or altered.
        """
        box = nacl.public.SealedBox(self._signing_key.to_curve25519_private_key())
        try:
            return bytes(box.decrypt(sealed))
        except nacl.exceptions.CryptoError:
            raise AuthenticationError("sealed to another key, or altered") from None

    def seed(self) -> bytes:
        """The secret 32-byte seed."""
        return bytes(self._signing_key)

    def to_file_bytes(self) -> bytes:
        """The key file contents."""
        doc = {
            "version": _KEY_FILE_VERSION,
            "type": "ed25519",
            "seed": base64.b64encode(self.seed()).decode("ascii"),
            "node_id": str(self.node_id),
        }
        header = "plexinode node identity. This file is secret: whoever has it is this node.\n"
        return (header + json.dumps(doc, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_file_bytes(cls, data: bytes, where: str = "key file") -> Identity:
        """Parse a key file; raises IdentityError naming what is wrong."""
        try:
            _header, _, body = data.decode("utf-8").partition("\n")
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            if doc.get("version") != _KEY_FILE_VERSION or doc.get("type") != "ed25519":
                raise IdentityError(
                    f"{where}: unsupported key file version/type "
                    f"{doc.get('version')!r}/{doc.get('type')!r}"
                )
            seed = base64.b64decode(doc["seed"], validate=True)
            if len(seed) != SEED_BYTES:
                raise ValueError("seed length")
            identity = cls.from_seed(seed)
        except IdentityError:
            raise
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error):
            raise IdentityError(f"{where} is corrupt (cannot parse the key)") from None
        if doc.get("node_id") != str(identity.node_id):
            raise IdentityError(f"{where} is corrupt (its node ID does not match its key)")
        return identity


def key_path(data_dir: Path) -> Path:
    """Where the key file of a data dir lives."""
    return data_dir / KEY_FILE_NAME


def create_identity_file(data_dir: Path, difficulty: int = 0) -> Identity:
    """Generate an identity (solving an ID puzzle of `difficulty` bits) and write it to the
    data dir; refuses to overwrite one."""
    path = key_path(data_dir)
    if path.exists():
        raise IdentityError(f"{path} already exists: refusing to overwrite this node's identity")
    return write_identity_file(data_dir, Identity.generate(difficulty))


def write_identity_file(data_dir: Path, identity: Identity) -> Identity:
    """Write `identity` as the data dir's key file (``init --import``); refuses to overwrite
    one."""
    path = key_path(data_dir)
    try:
        atomic_write(path, identity.to_file_bytes(), mode=0o600, overwrite=False)
    except FileExistsError:
        raise IdentityError(
            f"{path} already exists: refusing to overwrite this node's identity"
        ) from None
    except PermissionError as exc:
        raise IdentityError(f"cannot write {path}: {exc.strerror}") from None
    log.info("created identity %s in %s", identity.node_id, path)
    return identity


def load_identity_file(data_dir: Path) -> Identity:
    """Load the identity of a data dir; IdentityError if missing, unreadable or corrupt."""
    path = key_path(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"{path} is missing: run `plexinode init` first") from None
    except PermissionError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); fixing to 0600", path, mode & 0o777)
        path.chmod(0o600)
    return Identity.from_file_bytes(data, where=str(path))


def seal_to(public_key: bytes, plaintext: bytes) -> bytes:
    """`plaintext` sealed (anonymous X25519 + XSalsa20-Poly1305, libsodium's sealed box) to the
    node whose Ed25519 public key is `public_key`: only that node's :meth:`Identity.unseal`
    opens it. Adds :data:`SEAL_OVERHEAD` bytes.

    Raises:
        AuthenticationError: `public_key` is not a valid Ed25519 public key.
    """
    try:
        recipient = nacl.signing.VerifyKey(public_key).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise AuthenticationError("not an Ed25519 public key") from None
    return bytes(nacl.public.SealedBox(recipient).encrypt(plaintext))


#: Bytes a sealed box adds: the sender's one-time X25519 public key and the MAC.
SEAL_OVERHEAD: Final = 48
