"""The NATS JetStream transport, for fleets spread across machines (and through leaf nodes).

Layout on the bus (created by the control side, bound by nodes):

- KV bucket `FAILSMALL_POINTERS`: one key per node, `node.<node_id>`, whose value is
  `{"digest": ...}`. The entry's KV revision *is* the assignment revision, so revisions grow
  across the fleet and a node can tell whether it missed one. One key per node (rather than a
  key per wave plus a node→wave map) keeps every pointer move atomic and lets a rollback move any
  subset of nodes in one step.
- Object store `FAILSMALL_BUNDLES`: the signed envelope of every published bundle, named by digest.
- Stream `FAILSMALL_REPORTS` on `failsmall.reports.apply.<node>` and
  `failsmall.reports.health.<node>`: nodes publish with JetStream acks; the control plane reads
  through the durable pull consumer `control`, so reports sent while it restarts are not lost.
  The reader runs under supervision (`failsmall.supervise`): a failure is logged within budget,
  retried with backoff and shown as degraded health.

Following a pointer: a node keeps one long-lived KV watcher per key (an ordered push consumer,
whose first delivery is the key's current value), instead of opening one per `watch` call. It
remembers the newest assignment the watcher delivered, so a `watch` that asks again for a
revision already delivered gets it at once. Resync: after a reconnect of the client the watcher
is opened again (its first delivery is then the current value), and a `watch` that ends without
news checks the key with one direct read; a newer revision there than the watcher delivered (a
watcher left behind by a JetStream restart beyond a leaf node) is returned and the watcher is
opened again. Either way the node sees the latest assignment, never an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from nats.js.object_store import ObjectStore

from failsmall.supervise import LoopHealth, SupervisedLoop
from failsmall.transport.base import (
    ApplyReport,
    Assignment,
    BundleNotFoundError,
    HealthReport,
    NoChange,
    TransportError,
)
from failsmall.transport.control import ReportSink
from failsmall.transport.stopping import cancel_and_wait

POINTERS_BUCKET = "FAILSMALL_POINTERS"
BUNDLES_BUCKET = "FAILSMALL_BUNDLES"
REPORTS_STREAM = "FAILSMALL_REPORTS"
REPORTS_SUBJECT = "failsmall.reports"
CONTROL_CONSUMER = "control"
REPORTS_MAX_AGE_S = 3600.0

_NODE_ID = re.compile(r"^[A-Za-z0-9_\-=]+$")
NatsFailure = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)

log = logging.getLogger(__name__)


def pointer_key(node_id: str) -> str:
    if not _NODE_ID.match(node_id):
        raise TransportError(
            f"node id {node_id!r} cannot be a NATS key: use letters, digits, '-', '_' or '='"
        )
    return f"node.{node_id}"


OP_TIMEOUT_S = 10.0
T = TypeVar("T")


async def _bounded(op: Awaitable[T], what: str, timeout_s: float = OP_TIMEOUT_S) -> T:
    """Await one bus operation for at most `timeout_s`: a bus that stops answering becomes a
    TransportError the caller retries, never a task that waits forever."""
    try:
        async with asyncio.timeout(timeout_s):
            return await op
    except TimeoutError as exc:
        raise TransportError(f"{what}: no answer from NATS within {timeout_s:.0f} s") from exc


async def _log_error(exc: Exception) -> None:
    log.info("NATS connection: %r (reconnecting)", exc)


async def _connect(servers: list[str], name: str) -> Client:
    try:
        return await nats.connect(
            servers=servers,
            name=name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=2,
            drain_timeout=2,
            error_cb=_log_error,
        )
    except NatsFailure as exc:
        raise TransportError(f"cannot connect to NATS at {', '.join(servers)}: {exc!r}") from exc


@dataclass
class _Follow:
    """One long-lived watcher on a node's pointer key, and what it delivered."""

    watcher: KeyValue.KeyWatcher
    reconnects: int
    latest: Assignment | None = None

    def saw(self, assignment: Assignment) -> None:
        if self.latest is None or assignment.revision > self.latest.revision:
            self.latest = assignment

    def newer_than(self, revision: int) -> Assignment | None:
        return self.latest if self.latest is not None and self.latest.revision > revision else None


class NatsNodeChannel:
    """The node side of the NATS transport (implements `NodeChannel`)."""

    def __init__(self, client: Client, jetstream_domain: str = "") -> None:
        self._nc = client
        # Beyond a leaf node connection, JetStream answers only under its domain's API prefix.
        self._js: JetStreamContext = client.jetstream(domain=jetstream_domain or None)
        self._kv: KeyValue | None = None
        self._objects: ObjectStore | None = None
        self._follows: dict[str, _Follow] = {}

    @classmethod
    async def connect(
        cls, servers: list[str], name: str = "failsmall-node", jetstream_domain: str = ""
    ) -> NatsNodeChannel:
        """Connect to `servers`; `jetstream_domain` names the control plane's JetStream when
        the servers are leaf nodes of the servers it runs on."""
        return cls(await _connect(servers, name), jetstream_domain)

    async def _pointers(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await _bounded(
                    self._js.key_value(POINTERS_BUCKET), "opening the pointer bucket"
                )
            except NatsFailure as exc:
                raise TransportError(
                    f"KV bucket {POINTERS_BUCKET} is not available: is the control plane up, "
                    "and, if this node connects through a leaf node, is --jetstream-domain "
                    f"set to the control plane's JetStream domain? ({exc!r})"
                ) from exc
        return self._kv

    async def _bundles(self) -> ObjectStore:
        if self._objects is None:
            try:
                self._objects = await _bounded(
                    self._js.object_store(BUNDLES_BUCKET), "opening the bundle store"
                )
            except NatsFailure as exc:
                raise TransportError(
                    f"object store {BUNDLES_BUCKET} is not available: {exc!r}"
                ) from exc
        return self._objects

    async def watch(
        self, node_id: str, after_revision: int, timeout_s: float
    ) -> Assignment | NoChange:
        key = pointer_key(node_id)
        kv = await self._pointers()
        follow = await self._follow(kv, key)
        if (known := follow.newer_than(after_revision)) is not None:
            return known
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    entry = await follow.watcher.updates(timeout=remaining)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    break
                if entry is None:
                    continue  # the marker after the initial value
                if not isinstance(entry, KeyValue.Entry):
                    raise TransportError(f"the watcher on {key} was stopped")
                if entry.operation in (KV_DEL, KV_PURGE) or entry.value is None:
                    continue
                if entry.revision is not None:
                    follow.saw(Assignment(_decode_pointer(entry.value), entry.revision))
                if (newer := follow.newer_than(after_revision)) is not None:
                    return newer
            return await self._check(kv, key, follow, after_revision)
        except (*NatsFailure, TransportError) as exc:
            await self._unfollow(key)
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"watching {key} failed: {exc!r}") from exc

    async def _follow(self, kv: KeyValue, key: str) -> _Follow:
        """The key's watcher, opened on first use and again after a reconnect."""
        reconnects = int(self._nc.stats["reconnects"])
        follow = self._follows.get(key)
        if follow is not None and follow.reconnects == reconnects:
            return follow
        await self._unfollow(key)
        try:
            watcher = await _bounded(kv.watch(key), f"watching {key}")
        except NatsFailure as exc:
            raise TransportError(f"cannot watch {key}: {exc!r}") from exc
        self._follows[key] = follow = _Follow(watcher, reconnects)
        return follow

    async def _check(
        self, kv: KeyValue, key: str, follow: _Follow, after_revision: int
    ) -> Assignment | NoChange:
        """After a quiet watch, read the key once: a newer revision than the watcher delivered
        means the watcher fell behind; return it and open the watcher again."""
        try:
            entry = await _bounded(kv.get(key), f"reading {key}")
        except nats.js.errors.KeyNotFoundError:
            return NoChange(revision=after_revision)
        if entry.value is None or entry.revision is None:
            return NoChange(revision=after_revision)
        current = Assignment(_decode_pointer(entry.value), entry.revision)
        if follow.latest is None or current.revision > follow.latest.revision:
            if follow.latest is not None:
                log.info("watcher on %s missed revision %d; watching again", key, current.revision)
                await self._unfollow(key)
            follow.saw(current)
        return current if current.revision > after_revision else NoChange(after_revision)

    async def _unfollow(self, key: str) -> None:
        follow = self._follows.pop(key, None)
        if follow is not None:
            with contextlib.suppress(*NatsFailure, TransportError):
                await _bounded(
                    follow.watcher.stop(),  # type: ignore[no-untyped-call]
                    f"unwatching {key}",
                    timeout_s=5.0,
                )

    async def fetch(self, digest: str) -> bytes:
        store = await self._bundles()
        try:
            result = await _bounded(store.get(digest), f"fetching bundle {digest}")
        except nats.js.errors.ObjectNotFoundError as exc:
            raise BundleNotFoundError(f"no bundle with digest {digest} is published") from exc
        except NatsFailure as exc:
            raise TransportError(f"fetching bundle {digest} failed: {exc!r}") from exc
        return bytes(result.data or b"")

    async def _publish(self, kind: str, node_id: str, payload: dict[str, Any]) -> None:
        subject = f"{REPORTS_SUBJECT}.{kind}.{pointer_key(node_id).removeprefix('node.')}"
        try:
            await _bounded(
                self._js.publish(subject, json.dumps(payload).encode(), stream=REPORTS_STREAM),
                f"publishing the {kind} report",
            )
        except NatsFailure as exc:
            raise TransportError(f"publishing the {kind} report failed: {exc!r}") from exc

    async def send_apply(self, report: ApplyReport) -> None:
        await self._publish("apply", report.node_id, report.to_dict())

    async def send_health(self, report: HealthReport) -> None:
        await self._publish("health", report.node_id, report.to_dict())

    async def close(self) -> None:
        for key in list(self._follows):
            await self._unfollow(key)
        with contextlib.suppress(*NatsFailure, TransportError):
            await _bounded(self._nc.close(), "closing the connection", timeout_s=5.0)


def _decode_pointer(value: bytes) -> str:
    try:
        data = json.loads(value)
        return str(data["digest"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TransportError(f"malformed channel pointer on the bus: {value[:200]!r}") from exc


class NatsControlChannel:
    """The control side of the NATS transport: creates the layout, publishes, reads reports."""

    def __init__(self, client: Client, replicas: int) -> None:
        self._nc = client
        self._js: JetStreamContext = client.jetstream()
        self._replicas = replicas
        self._kv: KeyValue | None = None
        self._objects: ObjectStore | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reading: SupervisedLoop | None = None

    @classmethod
    async def connect(
        cls, servers: list[str], replicas: int = 1, name: str = "failsmall-control"
    ) -> NatsControlChannel:
        channel = cls(await _connect(servers, name), replicas)
        await channel._ensure_layout()
        return channel

    async def _ensure_layout(self) -> None:
        try:
            self._kv = await self._js.create_key_value(
                api.KeyValueConfig(bucket=POINTERS_BUCKET, history=5, replicas=self._replicas)
            )
            self._objects = await self._js.create_object_store(
                BUNDLES_BUCKET, api.ObjectStoreConfig(replicas=self._replicas)
            )
            await self._js.add_stream(
                api.StreamConfig(
                    name=REPORTS_STREAM,
                    subjects=[f"{REPORTS_SUBJECT}.>"],
                    max_age=REPORTS_MAX_AGE_S,
                    num_replicas=self._replicas,
                )
            )
        except NatsFailure as exc:
            raise TransportError(f"cannot create the JetStream layout: {exc!r}") from exc

    def _pointers(self) -> KeyValue:
        if self._kv is None:
            raise TransportError("the NATS layout is not created; use NatsControlChannel.connect")
        return self._kv

    def _bundles(self) -> ObjectStore:
        if self._objects is None:
            raise TransportError("the NATS layout is not created; use NatsControlChannel.connect")
        return self._objects

    async def start(self, sink: ReportSink) -> None:
        try:
            subscription = await self._js.pull_subscribe(
                f"{REPORTS_SUBJECT}.>",
                durable=CONTROL_CONSUMER,
                stream=REPORTS_STREAM,
                config=api.ConsumerConfig(
                    ack_wait=30, deliver_policy=api.DeliverPolicy.NEW, num_replicas=self._replicas
                ),
            )
        except NatsFailure as exc:
            raise TransportError(f"cannot subscribe to node reports: {exc!r}") from exc

        async def read() -> None:
            await self._read_reports(subscription, sink)

        self._reading = SupervisedLoop("NATS report reader", read, log)
        self._reader = asyncio.create_task(self._reading.run())

    def health(self) -> list[LoopHealth]:
        return [self._reading.health] if self._reading is not None else []

    async def _read_reports(
        self, subscription: JetStreamContext.PullSubscription, sink: ReportSink
    ) -> None:
        """Read one batch of reports and hand each to `sink`. A batch that cannot be fetched
        raises (the supervisor retries); an unacknowledged report is delivered again."""
        try:
            messages = await subscription.fetch(batch=256, timeout=1.0)
        except nats.errors.TimeoutError:
            return
        for message in messages:
            await self._dispatch(message.subject, message.data, sink)
            with contextlib.suppress(*NatsFailure, TransportError):
                await _bounded(message.ack(), "acknowledging a report")

    @staticmethod
    async def _dispatch(subject: str, data: bytes, sink: ReportSink) -> None:
        kind = subject.removeprefix(REPORTS_SUBJECT + ".").split(".", 1)[0]
        try:
            payload = json.loads(data)
            if kind == "apply":
                await sink.on_apply(ApplyReport.from_dict(payload))
            elif kind == "health":
                await sink.on_health(HealthReport.from_dict(payload))
            else:
                log.warning("ignoring a report on unknown subject %s", subject)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("dropping a malformed report on %s: %r", subject, exc)

    async def publish_bundle(self, digest: str, envelope: bytes) -> None:
        store = self._bundles()
        try:
            await _bounded(store.get_info(digest), f"checking bundle {digest}")
            return
        except nats.js.errors.ObjectNotFoundError:
            pass
        except NatsFailure as exc:
            raise TransportError(f"checking bundle {digest} on the bus failed: {exc!r}") from exc
        try:
            await _bounded(store.put(digest, envelope), f"publishing bundle {digest}")
        except NatsFailure as exc:
            raise TransportError(f"publishing bundle {digest} failed: {exc!r}") from exc

    async def assign(self, node_id: str, digest: str) -> Assignment:
        try:
            await _bounded(self._bundles().get_info(digest), f"checking bundle {digest}")
        except nats.js.errors.ObjectNotFoundError as exc:
            raise BundleNotFoundError(
                f"bundle {digest} is not published; publish it first"
            ) from exc
        except NatsFailure as exc:
            raise TransportError(f"checking bundle {digest} on the bus failed: {exc!r}") from exc
        payload = json.dumps({"digest": digest}).encode()
        try:
            revision = await _bounded(
                self._pointers().put(pointer_key(node_id), payload),
                f"moving the pointer of {node_id}",
            )
        except NatsFailure as exc:
            raise TransportError(f"moving the pointer of {node_id} failed: {exc!r}") from exc
        return Assignment(digest=digest, revision=revision)

    async def _pointer_keys(self) -> list[str]:
        """The keys of the pointer bucket: the subjects its stream counts messages for, read
        from the stream's own state, a page of them at a time. (`KeyValue.keys()` lists them
        through a consumer and ends its list when the consumer reports nothing pending, which
        it can before the client has taken a message the server already sent: then it lists
        no key at all.)"""
        prefix = f"$KV.{POINTERS_BUCKET}."
        subject = f"$JS.API.STREAM.INFO.KV_{POINTERS_BUCKET}"
        keys: list[str] = []
        total = 1
        while len(keys) < total:
            request = json.dumps({"subjects_filter": f"{prefix}>", "offset": len(keys)})
            try:
                reply = await _bounded(
                    self._nc.request(subject, request.encode(), timeout=OP_TIMEOUT_S),
                    "listing channel pointers",
                )
                page = json.loads(reply.data)
            except (*NatsFailure, ValueError) as exc:
                raise TransportError(f"listing channel pointers failed: {exc!r}") from exc
            if "error" in page:
                raise TransportError(f"listing channel pointers failed: {page['error']}")
            subjects = page.get("state", {}).get("subjects") or {}
            if not subjects:
                break
            keys += (s.removeprefix(prefix) for s in subjects)
            total = int(page.get("total", len(keys)))
        return sorted(keys)

    async def assignments(self) -> dict[str, Assignment]:
        kv = self._pointers()
        keys = await self._pointer_keys()
        result: dict[str, Assignment] = {}
        for key in keys:
            try:
                entry = await _bounded(kv.get(key), f"reading {key}")
            except nats.js.errors.KeyNotFoundError:
                continue
            except NatsFailure as exc:
                raise TransportError(f"reading {key} failed: {exc!r}") from exc
            if entry.value is not None and entry.revision is not None:
                node = key.removeprefix("node.")
                result[node] = Assignment(_decode_pointer(entry.value), entry.revision)
        return result

    async def close(self) -> None:
        if self._reader is not None:
            await cancel_and_wait(self._reader)
            self._reader = None
        with contextlib.suppress(*NatsFailure, TransportError):
            await _bounded(self._nc.close(), "closing the connection", timeout_s=5.0)
