"""The HAProxy process: master-worker mode, runtime API commands, validated seamless reloads.

Narrow I/O seam: :class:`HAProxy` writes files, runs ``haproxy -c``, starts the master, sends runtime
commands to the worker's admin socket and ``reload`` to the master socket. Listening sockets pass
from the old worker to the new one on reload (``expose-fd listeners``), so no connection is refused
and established ones finish on the old worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from servicenet.common import log
from servicenet.common.component import bounded

_log = log.get("ingress.haproxy")


LOG_PIPE_SIZE = 1 << 20  # bytes the access-log pipe holds (Linux's default pipe-max-size)
CHUNK = 100  # commands per line on the admin connection (each under 100 bytes: well inside a 16 kB buffer)
CLI_IDLE = 60.0  # seconds: reopen the admin connection after this long unused ("stats timeout 2m")


class HAProxyError(RuntimeError):
    pass


def _die_with_parent() -> None:
    """Child pre-exec: SIGTERM the data plane if the controller process dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Atomic write (temp file + rename), owner-only."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    os.replace(tmp, path)


class HAProxy:
    def __init__(self, state_dir: Path, netns: str | None = None, binary: str = "haproxy",
                 log_pipe: bool = False) -> None:
        self.dir = Path(state_dir)
        self.log_pipe = log_pipe
        self.log_fd: int | None = None  # read end of the workers' stdout (``log stdout``) when log_pipe
        self.netns = netns
        self.binary = binary
        self.proc: asyncio.subprocess.Process | None = None
        self.reloads = 0
        self.cfg = self.dir / "haproxy.cfg"
        self.master_socket = self.dir / "master.sock"
        self.admin_socket = self.dir / "admin.sock"
        self._lock = asyncio.Lock()
        # one admin connection kept open in prompt mode for change batches (no connect/accept per
        # batch); it belongs to one worker, so it is dropped before a reload and when idle
        self._cli: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._cli_used = 0.0

    def _argv(self, *args: str) -> list[str]:
        base = [self.binary, *args]
        return ["ip", "netns", "exec", self.netns, *base] if self.netns else base

    # -- files ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        (self.dir / "certs").mkdir(exist_ok=True, mode=0o700)

    def write_files(self, files: dict[str, bytes | str], prefix: str = "") -> None:
        for rel, data in files.items():
            _write(self.dir / (prefix + rel) if not prefix else self.dir / prefix / rel, data)

    def prune(self, gen: str) -> None:
        """Remove the map and crt-list files of generations other than ``gen`` (after a reload the
        running worker has its own copy in memory; files are read only when a process starts)."""
        for p in self.dir.iterdir():
            if p.suffix in (".map", ".txt") and p.name.count(".") == 2 and not p.name.endswith(gen + p.suffix):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    async def check(self, cfg_text: str) -> str | None:
        """``haproxy -c`` on a candidate configuration; the error text, or None when valid."""
        cand = self.dir / "candidate.cfg"
        _write(cand, cfg_text)
        proc = await asyncio.create_subprocess_exec(*self._argv("-c", "-f", str(cand)),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await bounded(proc.communicate(), 60)
        if proc.returncode == 0:
            return None
        text = "\n".join(ln for ln in out.decode(errors="replace").splitlines() if "[NOTICE]" not in ln)
        return text[-4000:] or f"haproxy -c exited with {proc.returncode}"

    # -- process ----------------------------------------------------------------------------------------
    async def start(self, cfg_text: str) -> None:
        err = await self.check(cfg_text)
        if err:
            raise HAProxyError(f"initial configuration refused by haproxy -c: {err}")
        _write(self.cfg, cfg_text)
        for s in (self.master_socket, self.admin_socket):
            with contextlib.suppress(FileNotFoundError):
                s.unlink()
        out: int = asyncio.subprocess.DEVNULL
        if self.log_pipe:  # the access log: each worker writes its lines to stdout, a pipe read here
            self.log_fd, out = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)  # never blocks a worker: a full
            with contextlib.suppress(OSError):                             # pipe drops the line
                fcntl.fcntl(self.log_fd, fcntl.F_SETPIPE_SZ, LOG_PIPE_SIZE)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self._argv("-W", "-S", f"{self.master_socket},mode,600", "-f", str(self.cfg)),
                stdout=out, stderr=asyncio.subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            if self.log_pipe:
                os.close(out)
        try:
            await bounded(self._wait_worker(None), 20)
        except TimeoutError:
            err_text = ""
            if self.proc.returncode is not None and self.proc.stderr is not None:
                err_text = (await self.proc.stderr.read()).decode(errors="replace")
            await self.stop()
            raise HAProxyError(f"haproxy did not come up: {err_text}") from None
        if self.proc.stderr is not None:
            asyncio.get_running_loop().create_task(self._drain(self.proc.stderr))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while line := await stream.readline():
                text = line.decode(errors="replace").rstrip()
                if text:
                    _log.info("haproxy", line=text[:500])

    async def _wait_worker(self, old_pid: int | None) -> int:
        while True:
            if self.proc is not None and self.proc.returncode is not None:
                raise TimeoutError
            with contextlib.suppress(OSError, HAProxyError):
                info = await self.command("show info")
                m = re.search(r"^Pid: (\d+)$", info, re.M)
                if m and int(m.group(1)) != old_pid:
                    return int(m.group(1))
            await asyncio.sleep(0.01)

    async def worker_pid(self) -> int:
        info = await self.command("show info")
        m = re.search(r"^Pid: (\d+)$", info, re.M)
        if not m:
            raise HAProxyError(f"no Pid in show info: {info[:200]}")
        return int(m.group(1))

    async def reload(self, cfg_text: str) -> str | None:
        """Validate, then install ``cfg_text`` with a seamless reload; None on success, else why not
        (the running configuration and files stay as they were)."""
        async with self._lock:
            err = await self.check(cfg_text)
            if err:
                return err
            prev = self.cfg.read_text() if self.cfg.exists() else ""
            old_pid = await self.worker_pid()
            self._drop_cli()
            _write(self.cfg, cfg_text)
            await self._master("reload")
            try:
                await bounded(self._wait_worker(old_pid), 30)
            except TimeoutError:
                _write(self.cfg, prev)
                return "the new worker did not start (kept the previous one)"
            self.reloads += 1
            return None

    async def master_reloads(self) -> int:
        """The master's own reload counter (``show proc``)."""
        out = await self._master("show proc; quit")  # the master CLI keeps the connection otherwise
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "master":
                return int(parts[2])
        raise HAProxyError(f"no master line in show proc: {out[:300]}")

    async def stop(self) -> None:
        self._drop_cli()
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await bounded(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self.log_fd is not None:
            os.close(self.log_fd)
            self.log_fd = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    # -- sockets ----------------------------------------------------------------------------------------
    async def _send(self, path: Path, data: str, timeout: float = 10.0) -> str:
        async def go() -> str:
            r, w = await asyncio.open_unix_connection(str(path))
            try:
                w.write(data.encode())
                await w.drain()
                return (await r.read()).decode(errors="replace")
            finally:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
        return await bounded(go(), timeout)

    async def _master(self, line: str) -> str:
        """A master CLI command; the master re-executes itself on reload, so its socket may be
        briefly absent: retry for a few seconds."""
        for _ in range(200):
            try:
                return await self._send(self.master_socket, line + "\n")
            except (ConnectionRefusedError, FileNotFoundError):
                await asyncio.sleep(0.02)
        return await self._send(self.master_socket, line + "\n")

    async def command(self, line: str) -> str:
        return await self._send(self.admin_socket, line + "\n")

    async def commands(self, lines: list[str]) -> list[str]:
        """Several commands (``;``-separated, in chunks) on the kept-open admin connection; the
        answers of each chunk."""
        if not lines:
            return []
        out: list[str] = []
        async with self._lock:
            for i in range(0, len(lines), CHUNK):
                out.append(await self._prompt(lines[i:i + CHUNK]))
        return out

    async def apply_runtime(self, ops: list[str], pems: dict[str, bytes], running: dict[str, bytes],
                            cert_path: Callable[[str], str]) -> None:
        """Runtime API commands (answers that signal a failure are logged), then each certificate
        whose contents differ from ``running``: ``set ssl cert`` + commit, and its file for the next
        start or reload."""
        for ans in await self.commands(ops):
            if any(w in ans for w in ("No such", "Unknown", "Require")) or "not found" in ans.lower():
                _log.warning("runtime command answer", answer=ans.strip()[:300])
        for name, pem in pems.items():
            if running.get(name) != pem:
                await self.set_cert(cert_path(name), pem)
                self.write_files({f"certs/{name}": pem})

    async def _prompt(self, cmds: list[str], timeout: float = 10.0) -> str:
        """Commands as one line on the kept-open connection, opened in ``prompt`` mode: each
        command's answer ends with a ``> `` prompt."""
        if self._cli is not None and (self._cli[1].is_closing() or time.monotonic() - self._cli_used > CLI_IDLE):
            self._drop_cli()  # the worker closes idle CLI sessions ("stats timeout"): never race it
        if self._cli is None:
            r, w = await bounded(asyncio.open_unix_connection(str(self.admin_socket), limit=1 << 24), timeout)
            try:
                w.write(b"prompt\n")
                await bounded(r.readuntil(b"\n> "), timeout)
            except BaseException:
                w.close()
                raise
            self._cli = (r, w)
        r, w = self._cli
        try:
            w.write("; ".join(cmds).encode() + b"\n")
            await w.drain()

            async def answers() -> list[bytes]:
                return [(await r.readuntil(b"\n> "))[:-2] for _ in cmds]
            out = await bounded(answers(), timeout)
        except BaseException:
            self._drop_cli()  # a half-read answer must not be taken for the next command's
            raise
        self._cli_used = time.monotonic()
        return b"".join(out).decode(errors="replace")

    def _drop_cli(self) -> None:
        if self._cli is not None:
            self._cli[1].close()
            self._cli = None

    async def set_cert(self, path: str, pem: bytes) -> None:
        """Replace a loaded certificate in place: ``set ssl cert`` + ``commit ssl cert``."""
        body = pem.decode().strip("\n")
        ans = await self._send(self.admin_socket, f"set ssl cert {path} <<\n{body}\n\n")
        if "Transaction created" not in ans and "Transaction updated" not in ans:
            raise HAProxyError(f"set ssl cert {path}: {ans.strip()}")
        ans = await self.command(f"commit ssl cert {path}")
        if "Success" not in ans:
            raise HAProxyError(f"commit ssl cert {path}: {ans.strip()}")
