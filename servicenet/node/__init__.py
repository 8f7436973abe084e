"""servicenet.node: the node agent (kubelet) — pods as processes, pod networking, probes, logs,
exec and port-forward.

May import: api, client, common. Must not import other components. Pure cores: restart, probes,
status, podspec, envvars, spdy; the rest is the I/O shell (runtime -> pod -> container, one way).
"""
