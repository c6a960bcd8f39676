"""Network keys: who may talk to the nodes of a network at all.

Every datagram is encrypted under the sender's primary network key (:mod:`plexinode.net.packet`),
and every stream handshake's first message carries a 16-byte **network tag** (keyed BLAKE2b of
msg1 under the same key), which picks the key that is then mixed into every key of the
handshake (:mod:`plexinode.net.handshake`). A receiver tries each key of its keyring before
anything costly (a signature check, a Diffie-Hellman), so a node without a key of the network
is dropped for the price of a hash or two (decisions.md 27, 37, 38).

* A **private network** (``plexinode init --network NAME``) has random 32-byte keys, kept in
  ``DATA_DIR/network.keys`` (0600), handed to new members in invite tokens.
* An **open network** has one key derived from its name, so anyone who knows the name may
  join (the default network is the open network ``open``, which any node with a bootstrap
  address can join, as with IPFS); the tag still keeps networks of different names apart.

The keyring holds up to :data:`MAX_KEYS` keys. One is **primary**: it tags what this node
sends. The others are accepted on receipt, which is what makes rotation possible without a
flag day (as in Serf): install the new key everywhere, make it primary everywhere, remove the
old one. A removed key is kept **retired** (up to :data:`MAX_RETIRED`): it no longer admits
datagrams, and admits a stream handshake only for the one protocol that hands a member that
missed a rotation the current keys (:mod:`plexinode.security.rotation`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from plexinode.errors import DataDirError
from plexinode.fsutil import atomic_write
from plexinode.storage import Database

NETWORK_KEY_BYTES: Final = 32
TAG_BYTES: Final = 16
MAX_KEYS: Final = 5
#: Most retired keys kept (the oldest is forgotten first).
MAX_RETIRED: Final = 4
KEYRING_FILE: Final = "network.keys"
_TAG_PERSON: Final = b"px-net-tag-v1"
_OPEN_PERSON: Final = b"px-open-net-v1"


def open_network_key(network: str) -> bytes:
    """The key of the open network called `network` (public: derived from the name)."""
    return hashlib.blake2b(
        network.encode(), digest_size=NETWORK_KEY_BYTES, person=_OPEN_PERSON
    ).digest()


def network_tag(key: bytes, data: bytes) -> bytes:
    """The network tag of `data` under `key`."""
    return hashlib.blake2b(data, key=key, digest_size=TAG_BYTES, person=_TAG_PERSON).digest()


def key_id(key: bytes) -> str:
    """A short public name for a key (for listings; reveals nothing about the key)."""
    return hashlib.blake2b(key, digest_size=6, person=b"px-key-id-v1").hexdigest()


def parse_key(text: str) -> bytes:
    """A network key from its text form (64 hex digits).

    Raises:
        ValueError: Not 64 hex digits.
    """
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != NETWORK_KEY_BYTES:
        raise ValueError(f"a network key is {NETWORK_KEY_BYTES} bytes written as 64 hex digits")
    return key


class Keyring:
    """The network keys this node accepts, and the one it sends with.

    Args:
        keys: The keys, primary included (1 to :data:`MAX_KEYS`, each 32 bytes).
        primary: The key this node tags with.
        private: Whether the keys are secret (a private network) or derived from the network's
            name (an open one).
    """

    def __init__(
        self,
        keys: list[bytes],
        primary: bytes,
        *,
        private: bool,
        retired: list[bytes] | None = None,
        root: bytes | None = None,
        credentials: tuple[bytes, ...] = (),
    ) -> None:
        keys = list(dict.fromkeys(keys))
        retired = [k for k in dict.fromkeys(retired or []) if k not in keys]
        if not 1 <= len(keys) <= MAX_KEYS or primary not in keys:
            raise ValueError(f"a keyring holds 1-{MAX_KEYS} keys, the primary one among them")
        if any(len(k) != NETWORK_KEY_BYTES for k in (*keys, *retired)):
            raise ValueError(f"network keys are {NETWORK_KEY_BYTES} bytes")
        self._keys = keys
        self._retired = retired[-MAX_RETIRED:]
        self.primary = primary
        self.private = private
        #: A private network's pinned root public key (plexinode.net.authority), if it has
        #: one.
        self.root = root
        #: The keys of the join tickets this node issued and that are still open
        #: (plexinode.security.tickets), kept by the ticket service; they admit a stream
        #: handshake for ``join/1`` alone (:meth:`match_ticket`), never a datagram.
        self.tickets: list[bytes] = []
        #: This node's own grants and the chain of grants above them, encoded
        #: (plexinode.security.statements): what makes it a member, kept with the keys.
        self.credentials = credentials

    @classmethod
    def open(cls, network: str) -> Keyring:
        """The keyring of the open network called `network`."""
        key = open_network_key(network)
        return cls([key], key, private=False)

    @classmethod
    def generate(cls) -> Keyring:
        """A new private network's keyring: one random key."""
        key = os.urandom(NETWORK_KEY_BYTES)
        return cls([key], key, private=True)

    def become_private(
        self, keys: list[bytes], primary: bytes, root: bytes, credentials: tuple[bytes, ...]
    ) -> None:
        """Hold a private network's keys, root and this node's credentials instead of what it
        held (a node that was just admitted: its open network key is dropped, not retired)."""
        joined = Keyring(keys, primary, private=True, root=root, credentials=credentials)
        self._keys, self._retired = joined._keys, []
        self.primary, self.private = primary, True
        self.root, self.credentials = root, credentials

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys)

    @property
    def retired(self) -> list[bytes]:
        """The retired keys, oldest first."""
        return list(self._retired)

    def __len__(self) -> int:
        return len(self._keys)

    def tag(self, data: bytes) -> bytes:
        """The tag of `data` under the primary key."""
        return network_tag(self.primary, data)

    def by_preference(self) -> list[bytes]:
        """The active keys, primary first: the order in which received data is tried."""
        return [self.primary, *(k for k in self._keys if k != self.primary)]

    def match(self, data: bytes, tag: bytes) -> bytes | None:
        """The key under which `tag` is the tag of `data`, if any (primary tried first)."""
        for key in self.by_preference():
            if hmac.compare_digest(network_tag(key, data), tag):
                return key
        return None

    def match_retired(self, data: bytes, tag: bytes) -> bytes | None:
        """The retired key under which `tag` is the tag of `data`, if any."""
        for key in self._retired:
            if hmac.compare_digest(network_tag(key, data), tag):
                return key
        return None

    def match_ticket(self, data: bytes, tag: bytes) -> bytes | None:
        """The open ticket's key under which `tag` is the tag of `data`, if any."""
        for key in self.tickets:
            if hmac.compare_digest(network_tag(key, data), tag):
                return key
        return None

    # -- rotation ----------------------------------------------------------------------------

    def install(self, key: bytes) -> bool:
        """Accept `key` too; False if it was already installed.

        Raises:
            ValueError: The keyring is full, or the key is not 32 bytes.
        """
        if len(key) != NETWORK_KEY_BYTES:
            raise ValueError(f"network keys are {NETWORK_KEY_BYTES} bytes")
        if key in self._keys:
            return False
        if len(self._keys) >= MAX_KEYS:
            raise ValueError(f"the keyring is full ({MAX_KEYS} keys): remove an old key first")
        self._keys.append(key)
        if key in self._retired:
            self._retired.remove(key)
        self.private = True
        return True

    def use(self, key: bytes) -> None:
        """Send with `key` from now on.

        Raises:
            ValueError: The key is not installed.
        """
        if key not in self._keys:
            raise ValueError(f"key {key_id(key)} is not installed: install it first")
        self.primary = key

    def remove(self, key: bytes) -> None:
        """Stop accepting `key` (it is kept retired: see the module docstring).

        Raises:
            ValueError: The key is the primary one, or not installed.
        """
        if key == self.primary:
            raise ValueError("the primary key cannot be removed: make another key primary first")
        if key not in self._keys:
            raise ValueError(f"key {key_id(key)} is not installed")
        self._keys.remove(key)
        self._retired.append(key)
        del self._retired[:-MAX_RETIRED]

    def describe(self) -> list[dict[str, object]]:
        """The keys as ``plexinode network key list`` shows them (ids, never the keys)."""
        active = [
            {"key_id": key_id(k), "primary": k == self.primary, "retired": False} for k in self
        ]
        return active + [
            {"key_id": key_id(k), "primary": False, "retired": True} for k in self._retired
        ]


def keyring_path(data_dir: Path) -> Path:
    return data_dir / KEYRING_FILE


def load_keyring(data_dir: Path, network: str) -> Keyring:
    """The keyring in `data_dir`, or the open network's when there is no keyring file.

    Raises:
        DataDirError: The file exists but is unreadable or malformed.
    """
    path = keyring_path(data_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Keyring.open(network)
    except OSError as exc:
        raise DataDirError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
        keys = [parse_key(k) for k in doc["keys"]]
        retired = [parse_key(k) for k in doc.get("retired", [])]
        root = doc.get("root")
        if root is None:
            raise DataDirError(
                f"{path} holds a private network's keys but no root key: the network was made "
                "before admin keys and admission certificates, and nodes of today do not admit "
                "its members; make a new network with `plexinode init --network NAME`"
            )
        return Keyring(
            keys,
            parse_key(doc["primary"]),
            private=True,
            retired=retired,
            root=parse_key(root),
            credentials=tuple(
                base64.b64decode(c, validate=True) for c in doc.get("credentials", [])
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise DataDirError(f"{path} is corrupt ({exc}): restore it from a backup") from None


def save_keyring(data_dir: Path, keyring: Keyring) -> None:
    """Write a private network's keyring to `data_dir` (0600, atomically)."""
    doc: dict[str, object] = {
        "primary": keyring.primary.hex(),
        "keys": [k.hex() for k in keyring],
        "retired": [k.hex() for k in keyring.retired],
    }
    if keyring.root is not None:
        doc["root"] = keyring.root.hex()
        doc["credentials"] = [base64.b64encode(c).decode("ascii") for c in keyring.credentials]
    atomic_write(keyring_path(data_dir), (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)


#: The database's meta row that records that this node belongs to a private network (its
#: name), so that a lost network.keys stops the node instead of joining the open network of
#: the same name.
PRIVATE_NETWORK: Final = "private_network"


async def remember_private(db: Database, keyring: Keyring, network: str) -> None:
    """Record in `db` that this node's network is private; refuse to run without its keys.

    Raises:
        DataDirError: The database says the network is private, and the node was given the
            open network's keyring (``network.keys`` was lost or removed).
    """
    rows = await db.execute("SELECT value FROM meta WHERE key = ?", (PRIVATE_NETWORK,))
    if keyring.private:
        if not rows:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                (PRIVATE_NETWORK, network.encode()),
            )
        return
    if rows:
        name = bytes(rows[0][0]).decode(errors="replace")
        raise DataDirError(
            f"this node belongs to the private network {name!r} but has none of its keys "
            f"({KEYRING_FILE} is missing from the data dir): restore it from a backup, or "
            "join again with a new invite in a new data dir"
        )
