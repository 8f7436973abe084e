"""Thin adapters from HTTP/gRPC/TCP clients to one :class:`servicenet.lb.balancer.Balancer`.

Each imports its client library (an optional extra) only in its own module.
"""
