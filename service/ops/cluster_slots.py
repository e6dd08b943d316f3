"""A running Redis Cluster seen and changed from outside: its shards as CLUSTER SHARDS
reports them (for `ctl status`), and moving a book's hash slot to another primary
(`ctl move-book`, and the tests' slot moves)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.crc import key_slot

from service import redis_keys
from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.redis_cluster import SLOTS, Address, command, node_client


@dataclasses.dataclass
class Shard:
    primary: str  # host:port, or "-" while it has none
    replicas: list[str]  # "host:port (health)"
    slots: list[tuple[int, int]]
    books: list[str]


def shards(seed: Address, password: str | None, books: Sequence[str] = ()) -> list[Shard]:
    """Every shard as the cluster sees it now (CLUSTER SHARDS): its primary, replicas
    (with their health), slot ranges, and which of `books` live there."""
    with node_client(seed, password) as client:
        answer = command(client, "CLUSTER", "SHARDS")
    result = []
    for raw in answer:
        shard = _pairs(raw)
        slots = [int(slot) for slot in shard["slots"]]
        ranges = list(zip(slots[0::2], slots[1::2]))
        nodes = [_pairs(node) for node in shard["nodes"]]
        primary = next((n for n in nodes if n["role"] == "master"), None)
        result.append(Shard(
            primary=f"{primary['ip']}:{primary['port']}" if primary else "-",
            replicas=[f"{n['ip']}:{n['port']} ({n['health']})" for n in nodes
                      if n["role"] != "master"],
            slots=ranges,
            books=[book for book in books
                   if any(a <= key_slot(redis_keys.stock_key(book).encode()) <= b
                          for a, b in ranges)]))
    return sorted(result, key=lambda shard: shard.slots or [(SLOTS, SLOTS)])


def _pairs(flat: Any) -> dict[str, Any]:
    """CLUSTER SHARDS answers maps as flat lists in RESP2."""
    if isinstance(flat, dict):
        return {str(key): value for key, value in flat.items()}
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


def move_slot(slot: int, source: Address, target: Address, password: str | None,
              others: Sequence[Address] = (), out: Callable[[str], None] = print,
              batch: int = 100) -> int:
    """Move one hash slot from the primary `source` to the primary `target` the way
    Redis documents it (what `redis-cli --cluster reshard` does per slot): the target
    IMPORTING, the source MIGRATING, every key sent with MIGRATE (clients meanwhile get
    ASK for the keys already moved, or TRYAGAIN for a command whose keys are split),
    then the slot given to the target on both and on `others` (the other primaries).
    Returns the number of keys moved."""
    with node_client(source, password) as src, node_client(target, password) as dst:
        source_id, target_id = command(src, "CLUSTER", "MYID"), command(dst, "CLUSTER", "MYID")
        if source_id == target_id:
            raise OpsError("the slot is on that node already")
        command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        auth = ["AUTH", password] if password else []
        moved = 0
        while keys := command(src, "CLUSTER", "GETKEYSINSLOT", slot, batch):
            command(src, "MIGRATE", target[0], target[1], "", 0, 5000, *auth, "KEYS", *keys)
            moved += len(keys)
        for address in [target, source, *others]:
            with node_client(address, password) as node:
                command(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    out(f"slot {slot}: {moved} key(s) moved from {source[0]}:{source[1]} to "
        f"{target[0]}:{target[1]}")
    return moved


def move_book(layout: Layout, books: Sequence[str], sku: str, node: str,
              out: Callable[[str], None] = print) -> None:
    """`ctl move-book SKU NODE`: move the book's slot to the primary NODE (a process
    name, e.g. redis-2)."""
    if node not in layout.redis_nodes or not layout.redis_shards:
        raise OpsError(f"no cluster node named {node!r}; known: {', '.join(layout.redis_nodes)}"
                       if layout.redis_shards else
                       "`ctl move-book` needs a cluster started with `up --redis-cluster`")
    if sku not in books:
        raise OpsError(f"unknown SKU {sku!r}; `ctl status` lists the books of each shard")
    password = layout.redis_password()
    target = ("127.0.0.1", layout.redis_nodes[node])
    with node_client(target, password) as client:
        if client.info("replication")["role"] != "master":
            raise OpsError(f"{node} is a replica now: name a primary (`ctl status`)")
    slot = slot_of(redis_keys.stock_key(sku))
    found = shards(target, password)
    owner = next((shard for shard in found if any(a <= slot <= b for a, b in shard.slots)),
                 None)
    if owner is None or owner.primary == "-":
        raise OpsError(f"slot {slot} has no primary now; see `ctl status`")
    source = _address(owner.primary)
    if source == target:
        raise OpsError(f"{sku} lives on {node} already")
    others = [_address(shard.primary) for shard in found
              if shard.primary not in ("-", owner.primary) and _address(shard.primary) != target]
    out(f"moving {sku} (slot {slot}) to {node}…")
    move_slot(slot, source, target, password, others, out)


def _address(name: str) -> Address:
    host, _, port = name.rpartition(":")
    return host, int(port)


# `ctl status` names this many books per shard (a generated catalog has thousands)
BOOKS_SHOWN = 4


def status_lines(layout: Layout, books: Sequence[str]) -> list[str]:
    """`ctl status`'s view of the cluster: each shard's slots, nodes and books."""
    seeds = [("127.0.0.1", port) for port in layout.redis_nodes.values()]
    for seed in seeds:
        try:
            found = shards(seed, layout.redis_password(), books)
            break
        except (redis.RedisError, OSError):
            continue
    else:
        return ["Redis Cluster: no node answers (see var/log/redis-*.log)"]
    lines = [f"{'SHARD':<6} {'SLOTS':<20} {'PRIMARY':<16} {'REPLICAS':<28} BOOKS"]
    for number, shard in enumerate(found, start=1):
        slots = ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in shard.slots) or "none"
        books = shard.books
        shown = ", ".join(books[:BOOKS_SHOWN]) + (f" … ({len(books)} in all)"
                                                   if len(books) > BOOKS_SHOWN else "")
        lines.append(f"{number:<6} {slots:<20} {shard.primary:<16} "
                     f"{', '.join(shard.replicas) or '-':<28} {shown or '-'}")
    return lines


def partner(name: str) -> str:
    """The other node of a local shard: `redis-N` and `redis-N-replica` were made primary
    and replica of one shard (`up --redis-cluster`); failovers swap their roles only."""
    return name.removesuffix("-replica") if name.endswith("-replica") else f"{name}-replica"


def pair_problem(layout: Layout) -> str | None:
    """None when each local shard has one primary, and its partner replicates from it
    with the link up; else what is not so."""
    for name in [node for node in layout.redis_nodes if not node.endswith("-replica")]:
        infos = {}
        for node in (name, partner(name)):
            try:
                with node_client(("127.0.0.1", layout.redis_nodes[node]),
                                 layout.redis_password()) as client:
                    infos[node] = client.info("replication")
            except (redis.RedisError, OSError) as exc:
                return f"{node} does not answer ({exc})"
        primaries = [node for node, info in infos.items() if info["role"] == "master"]
        if len(primaries) != 1:
            return f"{name} and {partner(name)}: {len(primaries)} primaries"
        replica = partner(primaries[0])
        info = infos[replica]
        if info.get("master_port") != layout.redis_nodes[primaries[0]] \
                or info.get("master_link_status") != "up":
            return f"{replica} is not replicating from {primaries[0]}"
    return None
