"""A node agent's pod runtime driven straight, to be killed (SIGKILL) at a random moment.

``python crash_child.py DATA_DIR NET_ID CIDR MARKER PODS`` starts PODS pods (netns mode, the
default unprivileged user) whose command carries MARKER, waits until their processes run, removes
them again and waits until they are torn down. It prints ``ready`` once imported, then waits for a
line ``go`` on stdin (the parent's random clock starts there: it starts the next child while this
one runs), and prints ``running`` and ``done``. Used by ``test_crash_reap.py``.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from servicenet.node.network import NetnsNetwork
from servicenet.node.podsecurity import NOBODY
from servicenet.node.runtime import PodRuntime, RuntimeConfig


def pod(name: str, marker: str) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"nodeName": "crash", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "x", "command": ["sleep", "3600", f"0.{marker}"]}]},
            "status": {"phase": "Pending"}}


async def main(data_dir: str, net_id: str, cidr: str, marker: str, n: int) -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    net = NetnsNetwork(cidr, net_id)
    await net.setup()
    rt = PodRuntime(RuntimeConfig(node_name="crash", data_dir=data_dir, default_user=NOBODY), net)
    rt.load_state()  # as NodeAgent.start: saved pods, then the reap (which also records this agent)
    await rt.reap_leftovers()
    pods = [pod(f"p{i}", marker) for i in range(n)]
    for p in pods:
        rt.sync_pod(p)

    def running() -> bool:
        return len(rt.workers) == n and all(
            r.proc is not None and r.proc.alive() for w in rt.workers.values() for r in w.runs)

    while not running():
        await asyncio.sleep(0.01)
    print("running", flush=True)
    for p in pods:
        rt.remove_pod(p)
    while rt.workers:
        await asyncio.sleep(0.01)
    rt.journal.close()
    print("done", flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], a[3], int(a[4])))
