"""Shared plumbing: structured logging, health/metrics server, component protocol, netns."""
