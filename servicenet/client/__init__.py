"""servicenet.client: the API client and the shared informers every component is built on.

May import: api, common. Does network I/O (HTTPS to the API server) and nothing else; the
informer's :class:`Cache` and its reconnect rule (``next_backoff``) are pure.
"""

from servicenet.client.informer import (
    Cache,
    Informer,
    InformerFactory,
    metadata_stub,
    object_key,
    strip_managed_fields,
)
from servicenet.client.kubeconfig import ClusterConfig, KubeconfigError, load, render
from servicenet.client.rest import ApiClient, ApiError, collection_path, object_path, wait_for

__all__ = [
    "ApiClient", "ApiError", "Cache", "ClusterConfig", "Informer", "InformerFactory", "KubeconfigError",
    "collection_path", "load", "metadata_stub", "object_key", "object_path", "render", "strip_managed_fields",
    "wait_for",
]
