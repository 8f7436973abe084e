"""servicenet: Kubernetes service discovery and load balancing, rebuilt in Python."""

__version__ = "0.1.0"
