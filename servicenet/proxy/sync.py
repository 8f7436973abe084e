"""Kernel shells: apply rendered rules inside a network namespace, and the sync runner.

Backends run ``iptables-restore`` / ``nft -f -`` through ``ip netns exec <ns>`` (or in the
current namespace when ``netns`` is None), and nftables content over a netlink socket of our
own (:mod:`nft_encode`, :mod:`nft_socket`), since each ``nft`` run first dumps the table
into its cache and parses text. They remember what they programmed so that a partial sync only sends what changed;
any failure makes the next sync a full one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from servicenet.common import log
from servicenet.common.component import bounded, cancel_and_wait
from servicenet.proxy import nft_encode, nft_resync, nft_skeleton
from servicenet.proxy import render_iptables as ipt
from servicenet.proxy import render_nftables as nft
from servicenet.proxy.conntrack import FlowFilter
from servicenet.proxy.model import DesiredState, ServicePortName
from servicenet.proxy.nft_commands import Command, render
from servicenet.proxy.nft_live import LiveRule, LiveTable, RuleMatcher
from servicenet.proxy.nft_socket import NetlinkSession

_log = log.get("proxy.sync")


class ApplyError(RuntimeError):
    """The kernel rejected a ruleset."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    full: bool
    bytes: int
    render_seconds: float
    apply_seconds: float


async def run_cmd(netns: str | None, argv: list[str], stdin: bytes | None = None,
                  check: bool = True, timeout: float = 120.0) -> tuple[int, bytes, bytes]:
    full = argv if netns is None else ["ip", "netns", "exec", netns, *argv]
    proc = await asyncio.create_subprocess_exec(
        *full, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await bounded(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ApplyError(f"{argv[0]} timed out after {timeout}s") from None
    except asyncio.CancelledError:
        proc.kill()  # never leave a restore running behind a cancelled sync
        raise
    rc = proc.returncode or 0
    if check and rc != 0:
        raise ApplyError(f"{' '.join(argv)} failed rc={rc}: {err.decode(errors='replace').strip()[:2000]}")
    return rc, out, err


class Backend(Protocol):
    mode: str

    async def apply(self, state: DesiredState, changed: set[ServicePortName] | None) -> ApplyResult: ...

    async def cleanup(self) -> None: ...


IPTABLES_VARIANTS = ("", "legacy", "nft")


def iptables_tools(variant: str) -> tuple[str, str, str]:
    """``(iptables, iptables-save, iptables-restore)`` for a variant.

    ``""`` is whatever the system's alternatives point to; ``"legacy"`` the x_tables
    backend, ``"nft"`` the nf_tables one. Same rules either way; on large rulesets the
    legacy backend restores far faster (10k services x 10 endpoints: ~8 s vs > 900 s).
    """
    if variant not in IPTABLES_VARIANTS:
        raise ValueError(f"unknown iptables variant {variant!r}")
    sfx = f"-{variant}" if variant else ""
    return f"iptables{sfx}", f"iptables{sfx}-save", f"iptables{sfx}-restore"


class IptablesBackend:
    mode = "iptables"

    def __init__(self, netns: str | None, cfg: ipt.IptablesConfig, timeout: float = 120.0,
                 variant: str = "") -> None:
        self.netns = netns
        self.cfg = cfg
        self.timeout = timeout
        self.variant = variant
        self._ipt, self._save, self._restore = iptables_tools(variant)
        self._active: frozenset[str] | None = None  # per-service chains programmed last time

    async def _nat_chains(self) -> set[str]:
        _, out, _ = await run_cmd(self.netns, [self._save, "-t", "nat"])
        return {ln[1:].split()[0] for ln in out.decode().splitlines() if ln.startswith(":KUBE-")}

    async def apply(self, state: DesiredState, changed: set[ServicePortName] | None) -> ApplyResult:
        full = changed is None or self._active is None
        existing = await self._nat_chains() if full else self._active
        t0 = time.perf_counter()
        r = ipt.render(state, self.cfg, changed=None if full else changed, existing_nat_chains=existing or ())
        t1 = time.perf_counter()
        try:
            await run_cmd(self.netns, [self._restore, "--noflush", "--counters"], r.payload.encode(),
                          timeout=self.timeout)
            if full:
                await self._ensure_jumps()
        except ApplyError:
            self._active = None
            raise
        self._active = r.active_nat_chains
        return ApplyResult(full, len(r.payload), t1 - t0, time.perf_counter() - t1)

    async def _ensure_jumps(self) -> None:
        for j in ipt.jump_rules(self.cfg):
            rc, _, _ = await run_cmd(self.netns, [self._ipt, "-t", j.table, "-C", j.chain, *j.args()], check=False)
            if rc != 0:
                await run_cmd(self.netns, [self._ipt, "-t", j.table, "-I", j.chain, *j.args()])

    async def cleanup(self) -> None:
        for j in ipt.jump_rules(self.cfg):
            for _ in range(10):  # remove duplicates too
                rc, _, _ = await run_cmd(self.netns, [self._ipt, "-t", j.table, "-D", j.chain, *j.args()],
                                         check=False)
                if rc != 0:
                    break
        existing: dict[str, list[str]] = {}
        for table in ("filter", "nat"):
            _, out, _ = await run_cmd(self.netns, [self._save, "-t", table])
            existing[table] = [ln[1:].split()[0] for ln in out.decode().splitlines() if ln.startswith(":KUBE-")]
        payload = ipt.render_cleanup(existing)
        if payload:
            await run_cmd(self.netns, [self._restore, "--noflush"], payload.encode())
        self._active = None


class NftablesBackend:
    """nftables mode: ``ip kube-proxy`` (see :mod:`render_nftables`).

    A full sync is two transactions: the skeleton (table, maps, sets, fixed chains and their
    rules: idempotent declarations, so re-running it changes nothing but drift) through
    ``nft -f``, then every service's objects as one atomic transaction over our own netlink
    socket, so the switch from the old service rules to the new ones is atomic. A partial
    sync is one netlink transaction with the changed services only. Whatever the netlink
    encoder does not cover goes through ``nft -f`` instead. With ``netlink=False`` a full
    sync is a single ``nft -f`` transaction, as in kube-proxy.
    """

    mode = "nftables"

    def __init__(self, netns: str | None, cfg: nft.NftConfig, timeout: float = 120.0,
                 netlink: bool = True, cold_piece: int = 1000) -> None:
        self.netns = netns
        self.cfg = cfg
        self.timeout = timeout
        self.netlink = netlink
        self.cold_piece = cold_piece  # services per transaction when filling a new table
        self._session: NetlinkSession | None = None
        self._side: NetlinkSession | None = None  # a second socket for dumps (resyncs)
        self.netlink_syncs = 0  # transactions sent over netlink (the rest went through nft -f)
        self._programmed: nft.Programmed | None = None
        self._fragments: nft.FragmentCache = {}
        self._blocks: nft.Blocks | None = None
        self._matcher = RuleMatcher(cfg.family)  # learns how the kernel lists our rules (resyncs)
        self._wanted = nft_resync.WantedElements()  # the wanted elements as the kernel lists them (resyncs)
        self._fixed_rules: dict[str, list[LiveRule]] | None = None  # fixed chains right after our skeleton
        self.last_repairs = 0  # commands the last resync sent (0: the table was intact)
        self._lean: nft.NftRuleset | None = None  # the last ruleset built with endpoints=False

    async def _existing(self) -> tuple[list[str], list[str]] | None:
        """Chains and sets (maps included) of our table, or None if there is no table.

        A netlink dump of the declarations: ``nft list`` would fetch every element too
        (seconds with 100k endpoints)."""
        loop = asyncio.get_running_loop()
        session = self._open_session()

        def both() -> tuple[list[str], list[str]] | None:
            chains = session.names("chains", self.cfg.family, self.cfg.table)
            sets = session.names("sets", self.cfg.family, self.cfg.table)
            return None if chains is None or sets is None or not chains else (chains, sets)

        try:
            return await bounded(loop.run_in_executor(None, both), self.timeout)
        except (OSError, TimeoutError) as e:
            self._close_session()
            raise ApplyError(f"listing the table failed: {e}") from e

    async def apply(self, state: DesiredState, changed: set[ServicePortName] | None) -> ApplyResult:
        t0 = time.perf_counter()
        full = changed is None or self._programmed is None or self._blocks is None
        if not full:
            try:
                tx, prog = nft.partial_transaction(self._programmed, state, changed or (), self.cfg,  # type: ignore[arg-type]
                                                   self._blocks)  # type: ignore[arg-type]
            except nft.NeedFullSync:
                full = True
        if not full:
            t1 = time.perf_counter()
            size = 0
            try:
                if tx:
                    sent = await self._apply_netlink(tx)
                    if sent is None:
                        text = render(tx, self.cfg.family, self.cfg.table)
                        size = len(text)
                        await self._nft_f(text)
                    else:
                        size = sent
            except ApplyError:
                self._forget()
                raise
            self._programmed = prog
            return ApplyResult(False, size, t1 - t0, time.perf_counter() - t1)
        return await self._full(state, t0)

    async def _full(self, state: DesiredState, t0: float) -> ApplyResult:
        shards = nft.shards_for(state)
        if self._programmed is not None:  # partial syncs since the last full one rendered these
            self._fragments = dict(self._programmed.fragments)
        if self._blocks is None or self._blocks.shards != shards:
            self._blocks = nft.Blocks(shards)
            self._fragments.clear()
        gc_was = gc.isenabled()
        gc.disable()  # a full sync allocates ~10^6 objects: collections in between only cost time
        try:
            if self.netlink:
                return await self._full_netlink(state, shards, t0)
            t_list = time.perf_counter()
            existing = self._programmed_names() or await self._existing()
            t0 += time.perf_counter() - t_list  # listing counts as apply time, not render time
            rs = nft.build(state, self.cfg, self._fragments, self._blocks)
            return await self._full_apply(state, rs, existing, t0)
        finally:
            if gc_was:
                gc.enable()

    async def _full_netlink(self, state: DesiredState, shards: int, t0: float) -> ApplyResult:
        """A full sync over netlink: a cold start into a new table, or a resync over the one
        there (dumped, compared, repaired: :mod:`nft_resync`)."""
        assert self._blocks is not None
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        session = self._open_session()
        # most likely a populated table (a resync, a restart): then render while the kernel dumps it
        populated = self._programmed is not None
        with contextlib.suppress(OSError, TimeoutError):  # (a restarted proxy asks; if it cannot, the dump tells)
            populated = populated or await bounded(
                loop.run_in_executor(None, session.has_table, cfg.family, cfg.table), self.timeout)
        wanted = nft_resync.element_sets(cfg, self._blocks.maps)
        # the elements on a second socket, in a second thread: mostly the kernel's work (it walks a
        # set from its start for every 32 KiB message: the hairpin set is the largest piece)
        dump = loop.run_in_executor(None, session.table, cfg.family, cfg.table, ())
        side_dump = loop.run_in_executor(None, self._open_session(side=True).elements, cfg.family, cfg.table, wanted)
        render_s = 0.0
        rs: nft.NftRuleset | None = None
        if populated:
            r0 = time.perf_counter()
            rs = self._lean_build(state)
            # and the wanted elements in the dump's form (repair_transaction finds them made):
            # most of the dump is the kernel's work, which leaves this thread the interpreter
            self._wanted.of(rs, cfg.family)
            render_s += time.perf_counter() - r0
        try:
            live, side = await bounded(asyncio.gather(dump, side_dump), self.timeout)
        except (OSError, TimeoutError) as e:
            self._close_session()
            self._forget()
            raise ApplyError(f"dumping the table failed: {e}") from e
        except asyncio.CancelledError:
            self._close_session()  # (the dump may still be reading: the next sync gets a socket of its own)
            raise
        if live is not None:
            live.elements.update((n, blobs) for n, blobs in side.items() if n in live.sets)
        if live is None or not live.chains:
            if not any(st.port.lb_source_ranges and st.port.lb_ips for st in state.services.values()):
                return await self._cold_start(state, shards, t0)
            rs = self._lean_build(state)
            return await self._full_apply(state, rs, None, t0)
        if rs is None:
            r0 = time.perf_counter()
            rs = self._lean_build(state)
            render_s += time.perf_counter() - r0
        return await self._resync(state, rs, live, t0, render_s)

    def _lean_build(self, state: DesiredState) -> nft.NftRuleset:
        """The ruleset without endpoint map elements; the last one again if made of the same fragments."""
        rs = nft.build(state, self.cfg, self._fragments, self._blocks, endpoints=False, previous=self._lean)
        self._lean = rs
        return rs

    async def _resync(self, state: DesiredState, rs: nft.NftRuleset, live: LiveTable, t0: float,
                      render_s: float) -> ApplyResult:
        """Repair ``live`` into ``rs`` in one transaction (none when nothing drifted). The
        skeleton goes through ``nft -f`` first unless its declarations and fixed rules are intact."""
        cfg = self.cfg
        size = 0
        try:
            if not nft_resync.skeleton_intact(live, rs, cfg, self._fixed_rules):
                skeleton = nft_skeleton.skeleton_transaction(cfg, rs.endpoint_maps, rs.affinity_sets)
                size += len(skeleton)
                self._fixed_rules = None
                await self._nft_f(skeleton)
                session = self._open_session()
                loop = asyncio.get_running_loop()
                self._fixed_rules = await bounded(loop.run_in_executor(
                    None, session.chain_rules, cfg.family, cfg.table, nft_skeleton.FIXED_CHAINS), self.timeout)
            r0 = time.perf_counter()
            tx = nft_resync.repair_transaction(live, rs, cfg, self._matcher, self._wanted)
            render_s += time.perf_counter() - r0
            self.last_repairs = len(tx)
            if tx:
                sent = await self._apply_netlink(tx)
                if sent is None:
                    text = render(tx, cfg.family, cfg.table)
                    sent = len(text)
                    await self._nft_f(text)
                size += sent
        except (OSError, TimeoutError) as e:
            self._forget()
            raise ApplyError(f"resync failed: {e}") from e
        except ApplyError:
            self._forget()
            raise
        self._programmed = self._reuse_programmed(state) or nft.Programmed.of(state, cfg, self._fragments)
        total = time.perf_counter() - t0
        return ApplyResult(True, size, render_s, total - render_s)

    def _reuse_programmed(self, state: DesiredState) -> nft.Programmed | None:
        """The record of the last sync if every service's fragment is still the same object
        (a resync over an unchanged world): it already says what the table now holds."""
        prog, frags = self._programmed, self._fragments
        if prog is None or len(prog.fragments) != len(frags) or any(prog.fragments.get(n) is not f
                                                                      for n, f in frags.items()):
            return None
        if prog.node_ips != (frozenset(state.node_ips) if self.cfg.nodeport_primary else frozenset()):
            return None
        return prog

    async def _full_apply(self, state: DesiredState, rs: nft.NftRuleset,
                          existing: tuple[list[str], list[str]] | None, t0: float) -> ApplyResult:
        chains, sets = existing if existing is not None else (None, None)
        size = 0
        try:
            if not self.netlink:
                tx = nft.full_transaction(rs, self.cfg, existing_chains=chains, existing_sets=sets)
                t1 = time.perf_counter()
                size = len(tx)
                await self._nft_f(tx)
            else:
                skeleton = nft_skeleton.skeleton_transaction(self.cfg, rs.endpoint_maps, rs.affinity_sets)
                # the bulk (endpoint map and hairpin elements) is encoded from data, not text
                content = nft.content_transaction(rs, self.cfg, chains, sets or (), bulk=False)
                emaps, hairpin = rs.bulk()
                extra = nft_encode.bulk_messages(self.cfg.family, self.cfg.table, emaps, nft.HAIRPIN_SET, hairpin)
                t1 = time.perf_counter()
                size = len(skeleton)
                await self._nft_f(skeleton)
                sent = await self._apply_netlink(content, extra)
                if sent is not None:
                    size += sent
                else:
                    # cached fragments: this only adds the endpoint map elements
                    rs = nft.build(state, self.cfg, self._fragments, self._blocks)
                    text = render(nft.content_transaction(rs, self.cfg, chains, sets or ()),
                                  self.cfg.family, self.cfg.table)
                    size += len(text)
                    await self._nft_f(text)
        except ApplyError:
            self._forget()
            raise
        self._programmed = nft.Programmed.of(state, self.cfg, self._fragments)
        return ApplyResult(True, size, t1 - t0, time.perf_counter() - t1)

    async def _cold_start(self, state: DesiredState, shards: int, t0: float) -> ApplyResult:
        """A full sync into a table that does not exist yet, with kernel and Python working at once.

        The skeleton goes first (``nft -f``, while the first piece is rendered); then the
        services' chains, rules and endpoint map elements in pieces, each piece rendered and
        encoded while the kernel takes the previous one (nothing can reach these chains yet);
        then one transaction fills the dispatch maps and shared sets and so makes everything
        live at once.
        """
        cfg = self.cfg
        self._blocks = blocks = nft.Blocks(shards)
        names_ = state.sorted_names()
        aff = nft.affinity_sets(state)
        skeleton = nft_skeleton.skeleton_transaction(cfg, blocks.maps, aff, fresh=True)
        skel_task = asyncio.ensure_future(run_cmd(self.netns, ["nft", "-f", "-"], skeleton.encode(),
                                                  timeout=self.timeout))
        loop = asyncio.get_running_loop()
        session = self._open_session()
        frags: list[nft.Fragment] = []
        hairpin: dict[str, None] = {}  # addresses whose pair is already on its way, in that order
        kept: dict[str, list[bytes]] = {}  # the bulk elements as sent (the dump's form), for the first resync
        pending: asyncio.Future[int] | None = None
        size, render = len(skeleton), 0.0
        per = self.cold_piece
        pieces = [names_[i:i + per] for i in range(0, len(names_), per)]
        try:
            for piece in [*pieces, None]:
                r0 = time.perf_counter()
                if piece is None:  # the switch
                    rs = self._lean = nft.assemble(frags, state.node_ips, cfg, blocks.maps, endpoints=False)
                    cmds = nft.switch_transaction(rs, cfg)
                    extra = []  # (every hairpin pair went with its piece)
                else:
                    new = [nft.render_fragment(state.services[n], cfg, blocks) for n in piece]
                    frags += new
                    cmds = nft.prepare_transaction(new, cfg)
                    # the hairpin pairs go with their piece: they only ever match DNATed connections,
                    # and none exist before the switch
                    pairs = sorted({a for f in new for a in f.sets[nft.HAIRPIN_SET]} - hairpin.keys())
                    hairpin.update(dict.fromkeys(pairs))
                    extra = nft_encode.bulk_messages(cfg.family, cfg.table, nft.endpoint_runs(new), nft.HAIRPIN_SET,
                                                     pairs, kept)
                try:
                    batch, seqs = nft_encode.encode(cmds, cfg.family, cfg.table, session.next_seq(), extra)
                except nft_encode.Unsupported as e:  # the next full sync lists the table and repairs
                    raise ApplyError(f"cold start: {e}") from e
                session.reserve(seqs)
                size += len(batch)
                render += time.perf_counter() - r0
                if skel_task is not None:
                    await skel_task
                    skel_task = None
                    # the fixed chains as just written: a resync re-applies the skeleton only if they drift
                    self._fixed_rules = session.chain_rules(cfg.family, cfg.table, nft_skeleton.FIXED_CHAINS)
                if pending is not None:
                    await bounded(pending, self.timeout)
                pending = loop.run_in_executor(None, session.send, batch, seqs)
            assert pending is not None
            # what the next partial sync starts from, made while the kernel takes the switch
            r0 = time.perf_counter()
            fragments = dict(zip(names_, frags, strict=True))
            programmed = nft.Programmed.of(state, cfg, fragments)
            self._wanted.seed(rs, kept, list(hairpin))
            render += time.perf_counter() - r0
            await bounded(pending, self.timeout)
            pending = None
        except (OSError, TimeoutError) as e:
            self._forget()
            raise ApplyError(f"netlink transaction failed: {e}") from e
        except BaseException:
            self._forget()
            raise
        finally:
            if skel_task is not None:
                await asyncio.gather(skel_task, return_exceptions=True)
            if pending is not None:  # failed half way: let the piece in flight finish, then start afresh
                await asyncio.gather(pending, return_exceptions=True)
                self._close_session()
        self.netlink_syncs += len(pieces) + 1
        self._fragments, self._programmed = fragments, programmed
        total = time.perf_counter() - t0
        return ApplyResult(True, size, render, total - render)

    def _open_session(self, side: bool = False) -> NetlinkSession:
        """The netlink socket (``side``: a second one, for a dump that runs beside the first)."""
        if side:
            self._side = self._side or NetlinkSession(self.netns)
            return self._side
        self._session = self._session or NetlinkSession(self.netns)
        return self._session

    def _programmed_names(self) -> tuple[list[str], list[str]] | None:
        """Chains and sets in the kernel as this backend left them (None if unknown)."""
        prog, blocks = self._programmed, self._blocks
        if prog is None or blocks is None:
            return None
        chains = [c for f in prog.fragments.values() for c in f.chains]
        sets = [a for f in prog.fragments.values() for a in f.aff]
        return chains, [*sets, *blocks.maps]

    def _forget(self) -> None:
        """After a failure the kernel state is unknown: the next sync is full and lists the table."""
        self._programmed = None
        self._fixed_rules = None

    async def _nft_f(self, text: str) -> None:
        await run_cmd(self.netns, ["nft", "-f", "-"], text.encode(), timeout=self.timeout)

    async def _apply_netlink(self, tx: list[Command], extra: list[nft_encode.Message] | None = None) -> int | None:
        """Send ``tx`` (and ``extra``) over netlink; the batch's size, or None (nothing sent) when
        it has commands the encoder leaves to nft."""
        if not self.netlink:
            return None
        loop = asyncio.get_running_loop()
        try:
            session = self._open_session()
            try:
                batch = nft_encode.encode(tx, self.cfg.family, self.cfg.table, session.next_seq(), extra or ())
            except nft_encode.Unsupported:
                return None
            await bounded(loop.run_in_executor(None, session.send, *batch), self.timeout)
        except (OSError, TimeoutError) as e:
            self._close_session()
            raise ApplyError(f"netlink transaction failed: {e}") from e
        self.netlink_syncs += 1
        return len(batch[0])

    def _close_session(self) -> None:
        for session in (self._session, self._side):
            if session is not None:
                session.close()
        self._session = self._side = None

    async def cleanup(self) -> None:
        await run_cmd(self.netns, ["nft", "-f", "-"], nft_skeleton.cleanup_transaction(self.cfg).encode(), check=False)
        self._forget()
        self._close_session()


async def delete_flows(netns: str | None, flows: Iterable[FlowFilter]) -> int:
    """Run ``conntrack -D`` for each filter; returns how many invocations succeeded."""
    n = 0
    for f in flows:
        rc, _, _ = await run_cmd(netns, f.argv(), check=False, timeout=10)
        n += rc == 0  # conntrack exits 1 when nothing matched
    return n


class SyncRunner:
    """Rate-limited sync trigger, as upstream's BoundedFrequencyRunner with kube-proxy's 2 bursts.

    ``request()`` asks for a sync; runs take tokens from a bucket of ``burst`` that refills one
    per ``min_interval`` (so two changes in quick succession are both applied at once, and a
    steady stream is applied once per ``min_interval``); runs happen at most ``max_interval``
    apart, and ``retry_interval`` after a failure.
    """

    def __init__(self, fn: Callable[[], Awaitable[None]], min_interval: float = 1.0,
                 max_interval: float = 3600.0, retry_interval: float = 30.0, burst: int = 2) -> None:
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.retry_interval = retry_interval
        self.burst = max(1, burst)
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self.runs = 0
        self.failures = 0

    def _wait(self) -> float:
        """Seconds until a token is there (refilling the bucket up to now)."""
        now = time.monotonic()
        if self.min_interval <= 0:
            self._tokens = float(self.burst)
        else:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) / self.min_interval)
        self._stamp = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) * self.min_interval

    def request(self) -> None:
        self._event.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="proxy-sync-runner")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        timeout = self.max_interval
        while True:
            try:
                # asyncio.timeout (unlike 3.11's wait_for) never swallows a cancel that races the event
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                pass
            wait = self._wait()
            if wait > 0:
                await asyncio.sleep(wait)
                self._wait()
            self._tokens -= 1
            self._event.clear()
            self.runs += 1
            try:
                await self.fn()
                timeout = self.max_interval
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                _log.exception("sync failed")
                timeout = self.retry_interval
