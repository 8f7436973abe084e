"""servicenet.dns: the cluster DNS.

Pure core: ``RecordIndex`` (Kubernetes objects → records, updated per watch event) and
``Responder`` (query bytes → response bytes). I/O shell: ``servicenet.dns.server.DnsServer``.
"""

from servicenet.dns.model import DnsConfig
from servicenet.dns.records import RecordIndex
from servicenet.dns.responder import Forward, Responder

__all__ = ["DnsConfig", "Forward", "RecordIndex", "Responder"]
