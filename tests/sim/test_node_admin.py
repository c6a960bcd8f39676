"""Every admin command of a node, through a real admin socket beside it: answers, the clear
error each bad argument gets, and what an operator's changes leave in the data dir.

Simulated time (MockClock) with a real Unix socket: the test talks to the socket with trio
itself rather than the CLI's blocking client (plexinode.admin.client, tested on its own in
tests/unit/test_admin.py), because a worker thread would let virtual time race ahead while it
runs. For the same reason the node of the first test keeps its database in memory; the second
test, about what is kept across a restart, uses a data dir and asserts nothing that depends
on how much virtual time passes.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from plexinode import daemon
from plexinode.admin.commands import AdminCommands
from plexinode.admin.framing import LENGTH, RESPONSE_LIMITS, frame, parse_response
from plexinode.admin.results import config_rows
from plexinode.admin.server import AdminServer
from plexinode.config import load_config
from plexinode.datadir import socket_path
from plexinode.errors import AdminError
from plexinode.net.address import Address
from plexinode.net.certificates import ADMIN, MEMBER
from plexinode.net.keyring import Keyring, load_keyring, save_keyring
from plexinode.node import Node
from plexinode.security.statements import encode_statement, make_grant
from plexinode.testing.authority import ROOT, authority, founded
from plexinode.testing.member_cluster import NETWORK
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity
from plexinode.wire.codec import unpack


class Client:
    """The admin socket's client, in trio: one connection per call, as the CLI does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def call(self, command: str, **args: Any) -> Any:
        stream = await trio.open_unix_socket(str(self.path))
        async with stream:
            await stream.send_all(frame({"command": command, "args": args}))
            await stream.send_eof()  # the server answers, then closes
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
        (length,) = LENGTH.unpack(data[: LENGTH.size])
        assert len(data) == LENGTH.size + length
        return parse_response(unpack(data[LENGTH.size :], RESPONSE_LIMITS))

    async def refused(self, match: str, command: str, **args: Any) -> None:
        with pytest.raises(AdminError, match=match):
            await self.call(command, **args)


def admin_beside(node: Node, path: Path, data_dir: Path) -> AdminServer:
    """The admin socket at `path` with the node's command table, as the daemon builds it."""
    server = AdminServer(path)
    config = config_rows(load_config(data_dir, env={}).show())
    AdminCommands(node, config=config).register(server)
    return server


async def test_admin_commands_answer_and_refuse_bad_arguments(autojump_clock, tmp_path) -> None:
    async with open_memory_network(seed=51, latency=0.001) as net:
        hosts = [net.new_host() for _ in range(2)]
        first = Address(hosts[0], FAST.listen.port)
        other = Node(
            seeded_identity(0), FAST, net.transport(hosts[0]), wall_clock=trio.current_time
        )
        node = Node(
            seeded_identity(1),
            replace(FAST, bootstrap=(first,)),
            net.transport(hosts[1]),
            wall_clock=trio.current_time,
        )
        admin = admin_beside(node, tmp_path / "admin.sock", tmp_path)
        client = Client(admin.path)
        call, refused = client.call, client.refused

        async with trio.open_nursery() as nursery:
            await nursery.start(other.run)
            await nursery.start(functools.partial(node.run, beside=(admin.run,)))
            assert admin.path.exists()  # the admin socket is up once the node is ready
            with trio.fail_after(30):
                await node.dht.joined.wait()
                await node.membership.ready.wait()

            assert (await call("id"))["node_id"] == str(node.node_id)
            status = await call("status")
            assert status["node_id"] == str(node.node_id)
            assert list(status)[:8] == [
                "node_id",
                "version",
                "network",
                "address",
                "uptime_s",
                "peers",
                "members",
                "storage",
            ]
            rows = await call("config")
            assert all(list(r) == ["key", "value", "text", "source"] for r in rows)
            assert {"key": "datagram.retries", "value": 2, "text": "2", "source": "default"} in rows
            assert [p["node_id"] for p in await call("peers")] == [str(other.node_id)]

            # dht get
            own = await call("dht_get", type="peer", key=str(other.node_id))
            assert own["records"][0]["publisher"] == str(other.node_id)
            assert (await call("dht_get", type="provider", key="00" * 32))["records"] == []
            await refused("unknown record type", "dht_get", type="nope", key="x")
            await refused("64 hex digits", "dht_get", type="provider", key="abc")
            await refused("node ID", "dht_get", type="peer", key="not-an-id")
            await refused(
                "^invalid arguments for dht_get: type: expected text$", "dht_get", type=5, key="x"
            )

            # ping
            pong = await call("ping", address=str(first))
            rounds = ["rtts_ms", "sent", "received"]
            assert list(pong) == ["node_id", "address", "rtt_ms", *rounds, "via"]
            assert pong["node_id"] == str(other.node_id)
            by_id = await call("ping", node_id=str(other.node_id), via="stream")
            assert list(by_id) == ["node_id", "address", "rtt_ms", *rounds, "handshake_ms", "via"]
            assert by_id["via"] == "stream"
            await refused("^ping needs an address or a node ID$", "ping")
            await refused("expected HOST:PORT", "ping", address="10.0.0.1")
            await refused("^cannot reach 10.9.9.9:1: ", "ping", address="10.9.9.9:1", via="stream")
            await refused("^invalid node ID 'nope'", "ping", node_id="nope")
            await refused(
                "^invalid arguments for ping: unknown ping transport 'carrier-pigeon'$",
                "ping",
                address=str(first),
                via="carrier-pigeon",
            )
            await refused(
                r"^invalid arguments for ping: count must be within 1\.\.1000$",
                "ping",
                address=str(first),
                count=0,
            )

            # members and the cluster state
            with trio.fail_after(30):
                while len(await call("members")) < 2:  # noqa: ASYNC110 (polling the node)
                    await trio.sleep(0.1)
            written = await call("state_set", key="site.motd", value="hi")
            assert written["value"] == "hi"
            assert [e["key"] for e in await call("state_list")] == ["site.motd"]
            assert (await call("state_set", key="site.motd", value=None))["deleted"] is True
            await refused("the node's own", "state_set", key="net.keyring", value="{}")
            await refused("state key", "state_set", key="Bad Key", value="x")
            await refused("^a state value is text$", "state_set", key="k", value=5)

            # tags
            tags = await call("tags_list")
            assert set(tags) == {"version", "capacity", "keys"}
            assert (await call("tags_set", key="role", value="relay"))["role"] == "relay"
            assert (await call("tags_list"))["role"] == "relay"
            assert "role" not in await call("tags_set", key="role", value=None)
            await refused("^this node has no 'role' tag$", "tags_set", key="role")
            await refused("set by the node itself", "tags_set", key="version", value="9")
            await refused("^a tag is a text key and a text value$", "tags_set", value="x")
            await refused("^a tag is a text key and a text value$", "tags_set", key="a", value=1)
            await refused(
                "^a tag value is at most 64 characters, not 300$",
                "tags_set",
                key="big",
                value="x" * 300,
            )

            # invites
            invited = await call("invite", expires=600)
            assert list(invited) == ["token", "expires", "network", "addresses"]
            await refused("at most 30 days", "invite", expires=10**9)
            await refused("at most 30 days", "invite", expires=0)
            await refused("not an invite token", "join", token="nope")
            await refused("made by this node", "join", token=invited["token"])
            joined = await call("join", token=(await other.invite(600)).encode())
            assert joined["bootstrapped"] >= 1
            assert joined["network"] == FAST.network

            # network keys
            listed = await call("network_key", action="list")
            assert listed["private"] is False
            fresh = Keyring.generate().primary
            await refused("needs a key", "network_key", action="install")
            await refused("64 hex digits", "network_key", action="install", key="abc")
            # keys are rotated, and members revoked, on private networks only
            await refused("is open", "network_key", action="install", key=fresh.hex())
            await refused("is open", "network_key", action="use", key=fresh.hex())
            await refused(
                "unknown network key action", "network_key", action="dance", key=fresh.hex()
            )
            await refused("unknown command", "revoke", node_id=str(other.node_id))
            info = await call("authority_info")
            assert info == {"network": FAST.network, "root": "", "public_key": ""}
            await refused("is open", "authority_submit", statements=["00"])

            # leaving stops the node, and with it the admin socket
            assert await call("leave") == {"left": True, "acknowledged_by": 1}
            other.stop()
        assert not admin.path.exists()


async def test_an_operators_changes_are_kept_in_the_data_dir(mock_clock, tmp_path) -> None:
    # The database is a file, used from a worker thread: virtual time jumps only after the
    # event loop has been idle for this long (real seconds), not while a thread runs.
    mock_clock.autojump_threshold = 0.5
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    fresh = Keyring.generate().primary
    # a private network, whose keys this admin's node may rotate
    save_keyring(data_dir, founded(0, roles=lambda i: (MEMBER, ADMIN))(0))
    settings = replace(FAST, network=NETWORK)
    async with open_memory_network(seed=52, latency=0.001) as net:
        host = net.new_host()

        def make() -> Node:
            return Node(
                seeded_identity(0),
                settings,
                net.transport(host),
                data_dir=data_dir,
                wall_clock=trio.current_time,
                keyring=load_keyring(data_dir, NETWORK),
            )

        # First run: the daemon's composition (node, admin socket beside it), then `stop`.
        node = make()
        admin = admin_beside(node, socket_path(data_dir), data_dir)
        client = Client(admin.path)
        ready: list[Address] = []
        started = trio.Event()

        def on_ready(address: Address) -> None:
            ready.append(address)
            started.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.serve, node, admin, on_ready)
            with trio.fail_after(30):
                await started.wait()
                await node.membership.ready.wait()  # tags are claims: they need membership
            assert ready == [node.address]
            assert admin.path.exists()
            assert (await client.call("status"))["data_dir"] == str(data_dir)
            await client.call("tags_set", key="role", value="relay")
            await client.call("network_key", action="install", key=fresh.hex())
            # the authority through the admin socket: what the CLI signs with an admin key
            info = await client.call("authority_info", node_id=str(node.node_id))
            assert info["root"] == ROOT.public_key.hex()
            assert info["public_key"] == node.identity.public_key.hex()
            with pytest.raises(AdminError, match="has not heard from"):
                await client.call("authority_info", node_id=str(seeded_identity(7).node_id))
            stranger = seeded_identity(8).public_key
            grant = make_grant(ROOT, authority(), stranger, MEMBER, now=0)
            submitted = [encode_statement(grant).hex(), "09ff"]
            added = await client.call("authority_submit", statements=submitted)
            assert added["added"] == 1
            assert len(added["refused"]) == 1
            with pytest.raises(AdminError, match="not hex"):
                await client.call("authority_submit", statements=["zz"])
            assert (await client.call("stop"))["stopped"] is True
        assert not admin.path.exists()
        assert fresh in load_keyring(data_dir, NETWORK)

        # Second run: the tag and the key are back.
        again = make()
        async with trio.open_nursery() as nursery:
            await nursery.start(again.run)
            assert again.membership.tags["role"] == "relay"
            assert fresh in again.keyring
            again.stop()
