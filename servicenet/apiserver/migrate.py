"""``servicenet store migrate --from sqlite:DIR --to etcd:URL[,URL]`` (and back).

Copies every object of the source store into an empty target store, content unchanged; only
``resourceVersion`` changes (it is the target's revision). Secrets stay encrypted at rest on both
sides with the same EncryptionConfiguration (``--encryption-provider-config``; default: the SQLite
data dir's ``encryption-config.yaml``). Stop the API servers first: writes during a copy are missed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

from servicenet.api.views import meta as meta_of
from servicenet.apiserver import encryption
from servicenet.store import SQLiteStore
from servicenet.store.etcd import EtcdStore, EtcdTLS

_BATCH = 256


def _spec(s: str) -> tuple[str, str]:
    kind, _, where = s.partition(":")
    if kind not in ("sqlite", "etcd") or not where:
        raise argparse.ArgumentTypeError(f"expected sqlite:DIR or etcd:URL[,URL...], got {s!r}")
    return kind, where


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servicenet store", description="storage tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("migrate", help="copy every object between a SQLite data dir and etcd")
    m.add_argument("--from", dest="src", type=_spec, required=True, metavar="sqlite:DIR|etcd:URLS")
    m.add_argument("--to", dest="dst", type=_spec, required=True, metavar="sqlite:DIR|etcd:URLS")
    m.add_argument("--etcd-prefix", default="", help="key prefix on the etcd side")
    m.add_argument("--etcd-cafile", type=Path, default=None)
    m.add_argument("--etcd-certfile", type=Path, default=None)
    m.add_argument("--etcd-keyfile", type=Path, default=None)
    m.add_argument("--encryption-provider-config", type=Path, default=None,
                   help="EncryptionConfiguration (default: <sqlite DIR>/encryption-config.yaml)")
    return p


def _codec(args: argparse.Namespace) -> Any:
    path = args.encryption_provider_config
    if path is None:
        for kind, where in (args.src, args.dst):
            if kind == "sqlite" and (Path(where) / "encryption-config.yaml").exists():
                path = Path(where) / "encryption-config.yaml"
                break
    if path is None:
        raise SystemExit("servicenet store migrate: no encryption configuration: pass --encryption-provider-config")
    for kind, where in (args.src, args.dst):  # a SQLite target gets the configuration its server will need
        target = Path(where) / "encryption-config.yaml"
        if kind == "sqlite" and not target.exists():
            Path(where).mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(path, target)
            target.chmod(0o600)
    return encryption.load(path, create=False)


def _open(kind: str, where: str, args: argparse.Namespace, codec: Any) -> Any:
    if kind == "sqlite":
        Path(where).mkdir(parents=True, exist_ok=True, mode=0o700)
        return SQLiteStore(str(Path(where) / "state.db"), codec=codec, compact_interval=0)
    tls = None
    if args.etcd_cafile or args.etcd_certfile:
        tls = EtcdTLS(*(str(p) if p else None for p in (args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile)))
    # Events copied into etcd get a lease of the default --event-ttl, as an API server would give them
    return EtcdStore(where.split(","), prefix=args.etcd_prefix, tls=tls, codec=codec, compact_interval=0,
                     etcd_compact_interval=0, ttl={"/registry/core/events/": 3600.0})


async def migrate(src: Any, dst: Any) -> int:
    """Copy every object of the open store ``src`` into the open, empty store ``dst``."""
    if len(dst):
        raise SystemExit(f"servicenet store migrate: the target already holds {len(dst)} objects; "
                         "it must be empty")
    records, _, _ = src.list("/")
    for i in range(0, len(records), _BATCH):
        chunk = records[i:i + _BATCH]
        objs = []
        for rec in chunk:
            obj = rec.obj()
            meta_of(obj).pop("resourceVersion", None)
            objs.append((rec.key, obj))
        await asyncio.gather(*(dst.create(k, o) for k, o in objs))
    return len(records)


async def _run(args: argparse.Namespace) -> int:
    codec = _codec(args)
    src = _open(*args.src, args, codec)
    dst = _open(*args.dst, args, codec)
    await src.open()
    try:
        await dst.open()
        try:
            n = await migrate(src, dst)
        finally:
            await dst.close()
    finally:
        await src.close()
    print(f"copied {n} objects from {args.src[0]}:{args.src[1]} to {args.dst[0]}:{args.dst[1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.src[0] == args.dst[0] and args.src[1] == args.dst[1]:
        print("servicenet store migrate: --from and --to are the same store", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
