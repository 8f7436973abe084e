"""Raw durable-write rates: plain sqlite3 (WAL, synchronous=FULL) vs SQLiteStore with concurrent writers.

    python bench/store_raw.py [N] [CONCURRENCY]

Both measure ~1 KB rows. The ratio shows what group commit buys over one fsync per write.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from servicenet.store import SQLiteStore  # noqa: E402

VALUE = b"x" * 1024


def _fresh(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def raw_sqlite_insert_rate(path: str, n: int = 2000, batch: int = 1) -> float:
    """Rows/s for a plain insert loop, ``batch`` rows per commit (1 = one fsync per row)."""
    _fresh(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, value BLOB)")
        t0 = time.perf_counter()
        i = 0
        while i < n:
            conn.execute("BEGIN")
            for j in range(i, min(n, i + batch)):
                conn.execute("INSERT INTO t (id, name, value) VALUES (?, ?, ?)", (j + 1, f"/k/{j}", VALUE))
            conn.execute("COMMIT")
            i += batch
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()
        _fresh(path)


def store_create_rate(path: str, n: int = 20000, concurrency: int = 100) -> float:
    """Rows/s of SQLiteStore.create with ``concurrency`` writer tasks (each call awaits its fsync)."""
    _fresh(path)

    async def run() -> float:
        store = SQLiteStore(path, compact_interval=0)
        await store.open()
        obj = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"v": "x" * 950}}
        per = n // concurrency
        try:

            async def writer(w: int) -> None:
                for i in range(per):
                    await store.create(f"/registry/configmaps/w{w}/c{i}", obj)

            t0 = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(concurrency)))
            return per * concurrency / (time.perf_counter() - t0)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    finally:
        _fresh(path)


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 20000
    conc = int(argv[2]) if len(argv) > 2 else 100
    with tempfile.TemporaryDirectory(prefix="sn-store-bench-") as d:
        raw1 = raw_sqlite_insert_rate(os.path.join(d, "raw.db"), n=min(n, 3000), batch=1)
        raw100 = raw_sqlite_insert_rate(os.path.join(d, "raw.db"), n=n, batch=100)
        store = store_create_rate(os.path.join(d, "store.db"), n=n, concurrency=conc)
    print(f"raw sqlite3 WAL FULL, 1 row/commit:     {raw1:10.0f} rows/s")
    print(f"raw sqlite3 WAL FULL, 100 rows/commit:  {raw100:10.0f} rows/s")
    print(f"SQLiteStore.create, {conc} writers:      {store:10.0f} rows/s")
    print(f"ratio store / raw single-commit:        {store / raw1:10.2f}x")


if __name__ == "__main__":
    main(sys.argv)
