"""servicenet.common: process plumbing every component shares — structured logging, the health/metrics
server, the Component protocol, run-until-signal, netns helpers, connection takeover.

May import: nothing else in servicenet. Holds no Kubernetes knowledge (that is :mod:`servicenet.api`).
"""
