"""Child process for the kill -9 test: write as fast as possible, print every acknowledged write.

Usage: python store_writer_proc.py DB_PATH WRITERS
Each output line is ``<revision> <key>``, written with one os.write after the write returned.
"""

from __future__ import annotations

import asyncio
import os
import sys

from servicenet.store import SQLiteStore


async def main(path: str, writers: int) -> None:
    store = SQLiteStore(path, compact_interval=0)
    await store.open()
    os.write(1, b"ready\n")

    async def writer(wid: int) -> None:
        i = 0
        while True:
            key = f"/registry/pods/w{wid}/p{i // 2}"
            obj = {"kind": "Pod", "metadata": {"name": f"p{i // 2}"}, "spec": {"n": i, "pad": "x" * 500}}
            if i % 2 == 0:
                rec = await store.create(key, obj)
            else:  # every key is created, then updated once under CAS
                cur = store.get(key)
                assert cur is not None
                rec = await store.update(key, obj, cur.mod_revision)
            os.write(1, f"{rec.mod_revision} {key}\n".encode())
            i += 1

    await asyncio.gather(*(writer(w) for w in range(writers)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
