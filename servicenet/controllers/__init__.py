"""servicenet.controllers: the controller manager.

Pure cores (no I/O; Kubernetes wire dicts in, :class:`~servicenet.controllers.actions.Action` out):
``endpointslice_core``, ``endpoints_core``, ``mirroring_core`` (with ``slicepack``),
``replicaset_core``, ``deployment_core``, ``statefulset_core``, ``scheduler_core``,
``nodelifecycle_core``. I/O shell: ``manager.ControllerManager`` (plus ``workqueue`` and
``events``).
"""
