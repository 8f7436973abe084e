"""servicenet.apiserver: the Kubernetes-compatible API server (REST, watch, discovery, auth, GC).

May import: api, client (kubeconfig), common, store. Must not import the other components; it
reaches node agents only over HTTP (:mod:`.kubelet_proxy`). Pure core: :mod:`.watchfilter`.
"""
