"""Every admin command of a node, through its real admin socket: answers, and the clear error
each bad argument gets."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import pytest
import trio

from plexinode.admin.client import AdminClient
from plexinode.admin.commands import AdminCommands
from plexinode.admin.server import AdminServer
from plexinode.datadir import socket_path
from plexinode.errors import AdminError
from plexinode.net.address import Address
from plexinode.net.keyring import Keyring, key_id
from plexinode.node import Node
from plexinode.testing.memory import open_memory_network
from tests.sim.helpers import FAST, seeded_identity


async def test_admin_commands_answer_and_refuse_bad_arguments(tmp_path) -> None:
    # Real clock on purpose: the node keeps its database in a file and serves a real socket.
    async with open_memory_network(seed=51, latency=0.001) as net:
        hosts = [net.new_host() for _ in range(2)]
        first = Address(hosts[0], FAST.listen.port)
        data_dir = tmp_path / "node"
        data_dir.mkdir(mode=0o700)
        other = Node(
            seeded_identity(0), FAST, net.transport(hosts[0]), wall_clock=trio.current_time
        )
        node = Node(
            seeded_identity(1),
            replace(FAST, bootstrap=(first,)),
            net.transport(hosts[1]),
            data_dir=data_dir,
            wall_clock=trio.current_time,
        )
        admin = AdminServer(socket_path(data_dir))
        AdminCommands(node).register(admin)
        client = AdminClient(data_dir, timeout=30)

        async def call(command: str, **args: Any) -> Any:
            return await trio.to_thread.run_sync(functools.partial(client.call, command, **args))

        async def refused(match: str, command: str, **args: Any) -> None:
            with pytest.raises(AdminError, match=match):
                await call(command, **args)

        async with trio.open_nursery() as nursery:
            await nursery.start(other.run)
            await nursery.start(functools.partial(node.run, beside=(admin.run,)))
            with trio.fail_after(30):
                await node.dht.joined.wait()
                await node.membership.ready.wait()

            assert (await call("id"))["node_id"] == str(node.node_id)
            assert (await call("status"))["node_id"] == str(node.node_id)
            assert isinstance(await call("config"), list)
            assert [p["node_id"] for p in await call("peers")] == [str(other.node_id)]

            # dht get
            own = await call("dht_get", type="peer", key=str(other.node_id))
            assert own["records"][0]["publisher"] == str(other.node_id)
            assert (await call("dht_get", type="provider", key="00" * 32))["records"] == []
            await refused("unknown record type", "dht_get", type="nope", key="x")
            await refused("64 hex digits", "dht_get", type="provider", key="abc")
            await refused("node ID", "dht_get", type="peer", key="not-an-id")

            # ping
            pong = await call("ping", address=str(first))
            assert pong["node_id"] == str(other.node_id)
            by_id = await call("ping", node_id=str(other.node_id), via="stream")
            assert by_id["via"] == "stream"
            await refused("needs an address or a node ID", "ping")
            await refused("expected HOST:PORT", "ping", address="10.0.0.1")

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
            await refused("text", "state_set", key="k", value=5)

            # invites
            token = (await call("invite", expires=600))["token"]
            await refused("at most 30 days", "invite", expires=10**9)
            await refused("not an invite token", "join", token="nope")
            joined = await call("join", token=token)
            assert joined["bootstrapped"] >= 1

            # network keys
            listed = await call("network_key", action="list")
            assert listed["private"] is False
            fresh = Keyring.generate().primary
            await refused("needs a key", "network_key", action="install")
            await refused("64 hex digits", "network_key", action="install", key="abc")
            await refused("no installed key", "network_key", action="use", key="ffffffffffff")
            await refused(
                "unknown network key action", "network_key", action="dance", key=fresh.hex()
            )
            installed = await call("network_key", action="install", key=fresh.hex())
            assert installed["private"] is True
            assert len(installed["keys"]) == 2
            assert installed["plan"]["keys"][-1] == key_id(fresh)
            # the other member fetches the key; until it has, `use` waits for it
            await refused("installed on 1 of 2", "network_key", action="use", key=key_id(fresh))

            async def spread() -> int:
                listed = await call("network_key", action="list")
                return int(
                    next(k for k in listed["keys"] if k["key_id"] == key_id(fresh))["holders"]
                )

            with trio.fail_after(30):
                while await spread() < 2:  # noqa: ASYNC110 (polling the node)
                    await trio.sleep(0.5)
            await call("network_key", action="use", key=key_id(fresh))
            await refused("primary", "network_key", action="remove", key=fresh.hex())
            old = next(k["key_id"] for k in installed["keys"] if k["key_id"] != key_id(fresh))
            final = await call("network_key", action="remove", key=old)
            assert [(k["key_id"], k["primary"], k["retired"]) for k in final["keys"]] == [
                (key_id(fresh), True, False),
                (old, False, True),
            ]
            assert (data_dir / "network.keys").exists()
            await refused("invalid node ID", "revoke", node_id="nope")
            await refused("cannot revoke itself", "revoke", node_id=str(node.node_id))
            assert (await call("revoke", node_id=str(other.node_id)))["revoked"] == str(
                other.node_id
            )

            # leaving stops the node
            assert (await call("leave"))["left"] is True
            other.stop()
