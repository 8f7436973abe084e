"""servicenet.controllers: the controller manager (EndpointSlice, Endpoints, mirroring, ReplicaSet,
Deployment, StatefulSet, scheduler, node lifecycle).

May import: api, client, common. Must not import other components. Pure cores (``*_core``,
``slicepack``, ``wakeup``: wire dicts in, :class:`.actions.Action` out); shell: ``manager``.
"""
