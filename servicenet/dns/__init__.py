"""servicenet.dns: the cluster DNS (records for Services, EndpointSlices and Pods; forwarding).

May import: api, client, common — never apiserver or another component. Pure core: ``model``,
``records`` (RecordIndex), ``responder``, ``wire``; shell: ``server``, ``transport``, ``worker``.
"""

from servicenet.dns.model import DnsConfig
from servicenet.dns.records import RecordIndex
from servicenet.dns.responder import Forward, Responder

__all__ = ["DnsConfig", "Forward", "RecordIndex", "Responder"]
