"""The ingress controller: Ingress (networking.k8s.io/v1) to an HAProxy data plane.

Pure core (:mod:`.core`, :mod:`.annotations`, :mod:`.match`) compiles API objects into one ordered
routing table (:mod:`.model`); :mod:`.render` turns the table into HAProxy configuration; the shell
(:mod:`.haproxy`, :mod:`.controller`) runs HAProxy and applies changes at runtime or by seamless reload.
"""
