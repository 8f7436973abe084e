"""The shared API client and informers every servicenet component is built on."""

from servicenet.client.informer import Cache, Informer, InformerFactory, metadata_stub, object_key
from servicenet.client.kubeconfig import ClusterConfig, KubeconfigError, load, render
from servicenet.client.rest import ApiClient, ApiError, collection_path, object_path, wait_for

__all__ = [
    "ApiClient", "ApiError", "Cache", "ClusterConfig", "Informer", "InformerFactory", "KubeconfigError",
    "collection_path", "load", "metadata_stub", "object_key", "object_path", "render", "wait_for",
]
