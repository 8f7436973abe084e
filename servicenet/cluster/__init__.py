"""Several nodes on one machine: node network namespaces on an underlay bridge (``servicenet up --nodes``)."""
