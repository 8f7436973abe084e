"""Per-kind validation rules (private; use ``servicenet.api.validation``)."""

from __future__ import annotations

from typing import Any

from servicenet.api import rbac_validation, spec_cache
from servicenet.api._validation_base import (
    IP_MSG,
    Errs,
    GoLiteral,
    NameFn,
    Obj,
    _dicts,
    _loopback,
    _non_negative,
    _parse_ip,
    _protocol,
    _special_ip,
    go_label_selector,
    go_string_map,
    immutable,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_port_name,
    is_valid_port_num,
    validate_dns1123_label,
    validate_label_selector,
    validate_labels,
    validate_object_meta,
)
from servicenet.api._validation_net import (
    _immutable_data,
    validate_configmap,
    validate_endpoints,
    validate_endpointslice,
    validate_ingress,
    validate_namespace,
    validate_node,
    validate_secret,
)
from servicenet.api.errors import duplicate, forbidden, invalid, not_supported, required
from servicenet.api.resources import ResourceInfo
from servicenet.api.selectors import selector_matches
from servicenet.api.views import meta as meta_of

# ---------------------------------------------------------------- Service


def _validate_service_port(p: Obj, require_name: bool, names: set[str], path: str) -> Errs:
    errs: Errs = []
    name = p.get("name") or ""
    if require_name and not name:
        errs.append(required(path + ".name", ""))
    elif name:
        errs += validate_dns1123_label(name, path + ".name")
        if name in names:
            errs.append(duplicate(path + ".name", name))
        names.add(name)
    errs += [invalid(path + ".port", p.get("port"), m) for m in is_valid_port_num(p.get("port"))]
    errs += _protocol(p, path + ".protocol")
    tp = p.get("targetPort")
    if isinstance(tp, str):
        errs += [invalid(path + ".targetPort", tp, m) for m in is_valid_port_name(tp)]
    elif tp is not None:
        errs += [invalid(path + ".targetPort", tp, m) for m in is_valid_port_num(tp)]
    return errs


def _go_service_port(port: Any, proto: str) -> str:
    return (f'core.ServicePort{{Name:"", Protocol:"{proto}", AppProtocol:(*string)(nil), Port:{port}, '
            'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')


def _validate_cluster_ips(spec: Obj) -> Errs:
    errs: Errs = []
    cip = spec.get("clusterIP") or ""
    cips = list(spec.get("clusterIPs") or [])
    path = "spec.clusterIPs"
    if cip:
        if not cips:
            errs.append(required(path, ""))
        elif cips[0] != cip:
            errs.append(invalid(path, cips, "first value must match `clusterIP`"))
    elif cips:
        errs.append(invalid(path, cips, "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, fam in enumerate(spec.get("ipFamilies") or []):
        if fam not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", fam, ["IPv4", "IPv6"]))
        if fam in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", fam))
        seen.add(fam)
    pol = spec.get("ipFamilyPolicy")
    if pol is not None and pol not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
        errs.append(not_supported("spec.ipFamilyPolicy", pol, ["PreferDualStack", "RequireDualStack", "SingleStack"]))
    bad = False
    for i, ip in enumerate(cips):
        if i == 0 and ip == "None":
            if len(cips) > 1:
                bad = True
                errs.append(invalid(path, cips, "'None' must be the first and only value"))
            continue
        if _parse_ip(ip) is None:
            bad = True
            errs.append(invalid(f"{path}[{i}]", ip, IP_MSG))
    if len(cips) > 2:
        errs.append(invalid(path, cips, "may only hold up to 2 values"))
    if bad:
        return errs
    if len(cips) > 1:
        versions = {_parse_ip(ip).version for ip in cips[:2]}  # type: ignore[union-attr]
        if len(versions) != 2:
            errs.append(invalid(path, cips, "may specify no more than one IP for each IP family"))
    fams = spec.get("ipFamilies") or []
    if cips and cips[0] != "None" and fams:
        for i, ip in enumerate(cips[: len(fams)]):
            v = _parse_ip(ip)
            if fams[i] == "IPv4" and v is not None and v.version == 6:
                errs.append(invalid(f"{path}[{i}]", ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if fams[i] == "IPv6" and v is not None and v.version == 4:
                errs.append(invalid(f"{path}[{i}]", ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def validate_service(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1035_label)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    typ = spec.get("type") or ""
    ports = _dicts(spec.get("ports"))
    cips = spec.get("clusterIPs") or []
    headless = spec.get("clusterIP") == "None" or (bool(cips) and cips[0] == "None")
    if not ports and not headless and typ != "ExternalName":
        errs.append(required("spec.ports", ""))
    if typ in ("NodePort", "LoadBalancer") and headless:
        errs.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {typ} services"))
    if typ == "LoadBalancer":
        for i, p in enumerate(ports):
            if p.get("port") == 10250:
                errs.append(invalid(f"spec.ports[{i}].port", 10250,
                                    "may not expose port 10250 externally since it is used by kubelet"))
    if typ == "ExternalName":
        if cips:
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.get("ipFamilies"):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = str(spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs += [invalid("spec.externalName", cname, m) for m in is_dns1123_subdomain(cname)]
        else:
            errs.append(required("spec.externalName", ""))
    names: set[str] = set()
    for i, p in enumerate(ports):
        errs += _validate_service_port(p, len(ports) > 1, names, f"spec.ports[{i}]")
    if spec.get("selector") is not None:
        errs += validate_labels(spec.get("selector"), "spec.selector")
    aff = spec.get("sessionAffinity") or ""
    if not aff:
        errs.append(required("spec.sessionAffinity", ""))
    elif aff not in ("ClientIP", "None"):
        errs.append(not_supported("spec.sessionAffinity", aff, ["ClientIP", "None"]))
    elif aff == "ClientIP":
        t = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if not isinstance(t, int) or not 0 < t <= 86400:
            errs.append(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", t,
                                "must be greater than 0 and less than 86400"))
    elif spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    for i, ip in enumerate(spec.get("externalIPs") or []):
        path = f"spec.externalIPs[{i}]"
        errs += [invalid(path, ip, IP_MSG)] if _parse_ip(ip) is None else _special_ip(ip, path)
        errs += _loopback(ip, path, False)
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if not typ:
        errs.append(required("spec.type", ""))
    elif typ not in types:
        errs.append(not_supported("spec.type", typ, types))
    if typ == "ClusterIP":
        for i, p in enumerate(ports):
            if p.get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))
    if typ in ("NodePort", "LoadBalancer"):
        seen_np: set[tuple[str, int]] = set()
        for i, p in enumerate(ports):
            np = p.get("nodePort")
            if not np:
                continue
            errs += [invalid(f"spec.ports[{i}].nodePort", np, m) for m in is_valid_port_num(np)]
            key = (p.get("protocol") or "", np)
            if key in seen_np:
                errs.append(duplicate(f"spec.ports[{i}].nodePort", np))
            seen_np.add(key)
    seen_pp: set[tuple[str, Any]] = set()
    for i, p in enumerate(ports):
        key = (p.get("protocol") or "", p.get("port"))
        if key in seen_pp:
            errs.append(duplicate(f"spec.ports[{i}]", GoLiteral(_go_service_port(key[1], key[0]))))
        seen_pp.add(key)
    external = typ in ("NodePort", "LoadBalancer") or (typ == "ClusterIP" and bool(spec.get("externalIPs")))
    etp = spec.get("externalTrafficPolicy") or ""
    if not external:
        if etp:
            errs.append(invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy", ""))
    elif etp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.externalTrafficPolicy", etp, ["Cluster", "Local"]))
    hc = spec.get("healthCheckNodePort")
    if hc and not (typ == "LoadBalancer" and etp == "Local"):
        errs.append(invalid("spec.healthCheckNodePort", hc,
                            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    if typ != "ExternalName":
        itp = spec.get("internalTrafficPolicy")
        if itp is None:
            errs.append(required("spec.internalTrafficPolicy", ""))
        elif itp not in ("Cluster", "Local"):
            errs.append(not_supported("spec.internalTrafficPolicy", itp, ["Cluster", "Local"]))
    alloc = spec.get("allocateLoadBalancerNodePorts")
    if typ == "LoadBalancer" and alloc is None:
        errs.append(required("spec.allocateLoadBalancerNodePorts", ""))
    elif typ != "LoadBalancer" and alloc is not None:
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if typ != "LoadBalancer" and spec.get("loadBalancerSourceRanges"):
        errs.append(forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"))
    if typ != "ExternalName":
        errs += _validate_cluster_ips(spec)
    return errs


def validate_service_update(new: Obj, old: Obj) -> Errs:
    errs: Errs = []
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    if "ExternalName" not in (ns.get("type", "ClusterIP"), os_.get("type", "ClusterIP")):
        ncips, ocips = list(ns.get("clusterIPs") or []), list(os_.get("clusterIPs") or [])
        if ocips and ncips and ncips[0] != ocips[0]:
            errs.append(invalid("spec.clusterIPs[0]", ncips, "may not change once set"))
        if len(ocips) > 1 and len(ncips) > 1 and ncips[1] != ocips[1]:
            errs.append(invalid("spec.clusterIPs[1]", ncips, "may not change once set"))
        if ocips and not ncips:
            errs.append(invalid("spec.clusterIPs[0]", ncips, "primary clusterIP can not be unset"))
        nf, of = list(ns.get("ipFamilies") or []), list(os_.get("ipFamilies") or [])
        if of and nf and nf[0] != of[0]:
            errs.append(invalid("spec.ipFamilies[0]", nf[0], "may not change once set"))
    return errs + validate_service(new)


# ---------------------------------------------------------------- Pods and templates


def _validate_container(c: Obj, path: str, names: set[str], port_names: set[str]) -> Errs:
    errs: Errs = []
    name = c.get("name") or ""
    if not name:
        errs.append(required(path + ".name", ""))
    else:
        errs += validate_dns1123_label(name, path + ".name")
        if name in names:
            errs.append(duplicate(path + ".name", name))
        names.add(name)
    image = c.get("image") or ""
    if not image:
        errs.append(required(path + ".image", ""))
    elif image != image.strip():
        errs.append(invalid(path + ".image", image, "must not have leading or trailing whitespace"))
    for i, p in enumerate(_dicts(c.get("ports"))):
        pp = f"{path}.ports[{i}]"
        pname = p.get("name") or ""
        if pname:
            errs += [invalid(pp + ".name", pname, m) for m in is_valid_port_name(pname)]
            if pname in port_names:
                errs.append(duplicate(pp + ".name", pname))
            port_names.add(pname)
        cp = p.get("containerPort")
        if not cp:
            errs.append(required(pp + ".containerPort", ""))
        else:
            errs += [invalid(pp + ".containerPort", cp, m) for m in is_valid_port_num(cp)]
        if p.get("hostPort"):
            errs += [invalid(pp + ".hostPort", p["hostPort"], m) for m in is_valid_port_num(p["hostPort"])]
        errs += _protocol(p, pp + ".protocol")
    pol = c.get("imagePullPolicy") or ""
    if pol and pol not in ("Always", "IfNotPresent", "Never"):
        errs.append(not_supported(path + ".imagePullPolicy", pol, ["Always", "IfNotPresent", "Never"]))
    return errs


def validate_pod_spec(spec: Any, path: str) -> Errs:
    spec = spec if isinstance(spec, dict) else {}
    errs: Errs = []
    names: set[str] = set()
    containers = _dicts(spec.get("containers"))
    if not containers:
        errs.append(required(path + ".containers", ""))
    port_names: set[str] = set()
    for i, c in enumerate(containers):
        errs += _validate_container(c, f"{path}.containers[{i}]", names, port_names)
    for i, c in enumerate(_dicts(spec.get("initContainers"))):
        errs += _validate_container(c, f"{path}.initContainers[{i}]", names, set())
    vnames: set[str] = set()
    for i, v in enumerate(_dicts(spec.get("volumes"))):
        vn = v.get("name") or ""
        if not vn:
            errs.append(required(f"{path}.volumes[{i}].name", ""))
        else:
            errs += validate_dns1123_label(vn, f"{path}.volumes[{i}].name")
            if vn in vnames:
                errs.append(duplicate(f"{path}.volumes[{i}].name", vn))
            vnames.add(vn)
    rp = spec.get("restartPolicy") or ""
    if not rp:
        errs.append(required(path + ".restartPolicy", ""))
    elif rp not in ("Always", "OnFailure", "Never"):
        errs.append(not_supported(path + ".restartPolicy", rp, ["Always", "OnFailure", "Never"]))
    dp = spec.get("dnsPolicy") or ""
    dns_policies = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
    if not dp:
        errs.append(required(path + ".dnsPolicy", ""))
    elif dp not in dns_policies:
        errs.append(not_supported(path + ".dnsPolicy", dp, dns_policies))
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            errs += validate_dns1123_label(spec[key], f"{path}.{key}")
    if spec.get("nodeName"):
        errs += [invalid(path + ".nodeName", spec["nodeName"], m) for m in is_dns1123_subdomain(spec["nodeName"])]
    errs += _non_negative(spec.get("terminationGracePeriodSeconds"), path + ".terminationGracePeriodSeconds")
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not isinstance(ads, int) or ads <= 0):
        errs.append(invalid(path + ".activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive"))
    return errs


def validate_pod(obj: Obj) -> Errs:
    spec = obj.get("spec")
    return validate_object_meta(obj, True, is_dns1123_subdomain) + spec_cache.spec_valid(
        spec, "pod", lambda: validate_pod_spec(spec, "spec"))


_POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                   "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                   "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                   "(allow it to be set to 1 if it was previously negative)")


def validate_pod_update(new: Obj, old: Obj) -> Errs:
    errs = validate_pod(new)
    ns, os_ = dict(new.get("spec") or {}), dict(old.get("spec") or {})
    for s, o in ((ns, os_),):
        for key in ("containers", "initContainers"):
            if isinstance(s.get(key), list) and isinstance(o.get(key), list) and len(s[key]) == len(o[key]):
                s[key] = [{**c, "image": oc.get("image")} for c, oc in zip(s[key], o[key], strict=True)]
        s.pop("activeDeadlineSeconds", None)
        o.pop("activeDeadlineSeconds", None)
        old_tol = o.pop("tolerations", None) or []
        new_tol = s.pop("tolerations", None) or []
        if any(t not in new_tol for t in old_tol):
            errs.append(forbidden("spec", _POD_UPDATE_MSG))
            return errs
        if s.get("schedulingGates") == [] or (not s.get("schedulingGates") and o.get("schedulingGates")):
            s.pop("schedulingGates", None)
            o.pop("schedulingGates", None)
        if not o.get("nodeName"):  # binding sets nodeName once
            s.pop("nodeName", None)
            o.pop("nodeName", None)
    if ns != os_:
        errs.append(forbidden("spec", _POD_UPDATE_MSG))
    return errs


def _validate_template(spec: Obj, path: str, selector: Any) -> Errs:
    errs: Errs = []
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return [required(path, "")]
    labels = meta_of(tmpl).get("labels") or {}
    sel = selector if isinstance(selector, dict) else {}
    if (sel.get("matchLabels") or sel.get("matchExpressions")) and not selector_matches(sel, labels):
        errs.append(invalid(path + ".metadata.labels", go_string_map(labels),
                            "`selector` does not match template `labels`"))
    errs += validate_labels(labels, path + ".metadata.labels")
    errs += validate_pod_spec(tmpl.get("spec"), path + ".spec")
    rp = (tmpl.get("spec") or {}).get("restartPolicy")
    if rp and rp != "Always":
        errs.append(not_supported(path + ".spec.restartPolicy", rp, ["Always"]))
    if (tmpl.get("spec") or {}).get("activeDeadlineSeconds") is not None:
        errs.append(forbidden(path + ".spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def _validate_workload(obj: Obj, kind_word: str, name_fn: NameFn) -> tuple[Errs, Obj]:
    errs = validate_object_meta(obj, True, name_fn)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    errs += _non_negative(spec.get("replicas"), "spec.replicas")
    errs += _non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _non_negative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    sel = spec.get("selector")
    if sel is None:
        errs.append(required("spec.selector", ""))
    else:
        errs += validate_label_selector(sel, "spec.selector")
        if not (sel.get("matchLabels") or sel.get("matchExpressions")):
            errs.append(invalid("spec.selector", go_label_selector(sel, pointer=True),
                                f"empty selector is invalid for {kind_word}"))
    errs += _validate_template(spec, "spec.template", sel)
    return errs, spec


def _pct_or_int(v: Any, path: str) -> Errs:
    if isinstance(v, str):
        if not v.endswith("%") or not v[:-1].isdigit():
            return [invalid(path, v, "a valid percent string must be a numeric string followed by an ending '%' "
                                     "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")]
        if int(v[:-1]) > 100:
            return [invalid(path, v, "must not be greater than 100%")]
        return []
    return _non_negative(v, path)


def _is_zero(v: Any) -> bool:
    return v in (0, "0%", None)


def validate_deployment(obj: Obj) -> Errs:
    errs, spec = _validate_workload(obj, "deployment", is_dns1123_subdomain)
    st = spec.get("strategy") if isinstance(spec.get("strategy"), dict) else {}
    typ = st.get("type") or ""
    if typ == "Recreate" and st.get("rollingUpdate") is not None:
        errs.append(forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
    elif typ == "RollingUpdate":
        ru = st.get("rollingUpdate") or {}
        errs += _pct_or_int(ru.get("maxUnavailable"), "spec.strategy.rollingUpdate.maxUnavailable")
        errs += _pct_or_int(ru.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge")
        if _is_zero(ru.get("maxUnavailable")) and _is_zero(ru.get("maxSurge")):
            errs.append(invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"),
                                "may not be 0 when `maxSurge` is 0"))
    elif not typ:
        errs.append(required("spec.strategy.type", ""))
    else:
        errs.append(not_supported("spec.strategy.type", typ, ["Recreate", "RollingUpdate"]))
    pds = spec.get("progressDeadlineSeconds")
    if isinstance(pds, int):
        errs += _non_negative(pds, "spec.progressDeadlineSeconds")
        if pds <= (spec.get("minReadySeconds") or 0):
            errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return errs


def validate_replicaset(obj: Obj) -> Errs:
    return _validate_workload(obj, "deployment", is_dns1123_subdomain)[0]


def validate_statefulset(obj: Obj) -> Errs:
    errs, spec = _validate_workload(obj, "statefulset", is_dns1123_label)
    pmp = spec.get("podManagementPolicy") or ""
    if not pmp:
        errs.append(required("spec.podManagementPolicy", ""))
    elif pmp not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", pmp,
                            "must be 'OrderedReady' or 'Parallel'"))
    us = spec.get("updateStrategy") if isinstance(spec.get("updateStrategy"), dict) else {}
    ut = us.get("type") or ""
    if ut == "OnDelete" and us.get("rollingUpdate") is not None:
        errs.append(invalid("spec.updateStrategy.rollingUpdate", None,
                            "only allowed for updateStrategy 'RollingUpdate'"))
    elif ut == "RollingUpdate":
        errs += _non_negative((us.get("rollingUpdate") or {}).get("partition"),
                              "spec.updateStrategy.rollingUpdate.partition")
    elif not ut:
        errs.append(required("spec.updateStrategy", ""))
    else:
        errs.append(invalid("spec.updateStrategy", ut, "must be 'RollingUpdate' or 'OnDelete'"))
    return errs


_STS_UPDATE_MSG = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                   "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                   "'minReadySeconds' are forbidden")


def validate_statefulset_update(new: Obj, old: Obj) -> Errs:
    errs = validate_statefulset(new)
    mutable = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
    ns = {k: v for k, v in (new.get("spec") or {}).items() if k not in mutable}
    os_ = {k: v for k, v in (old.get("spec") or {}).items() if k not in mutable}
    if ns != os_:
        errs.append(forbidden("spec", _STS_UPDATE_MSG))
    return errs


def _selector_immutable(new: Obj, old: Obj) -> Errs:
    n, o = (new.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
    if n != o:
        return [invalid("spec.selector", go_label_selector(n), "field is immutable")]
    return []


def validate_generic(obj: Obj, info: ResourceInfo) -> Errs:
    return validate_object_meta(obj, info.namespaced, is_dns1123_subdomain)


def validate(info: ResourceInfo, obj: Obj, old: Obj | None, allow_loopback: bool) -> Errs:
    kind = (info.api_version, info.kind)
    if kind == ("v1", "Service"):
        return validate_service_update(obj, old) if old is not None else validate_service(obj)
    if kind == ("v1", "Pod"):
        return validate_pod_update(obj, old) if old is not None else validate_pod(obj)
    if kind == ("apps/v1", "Deployment"):
        return validate_deployment(obj) + (_selector_immutable(obj, old) if old is not None else [])
    if kind == ("apps/v1", "ReplicaSet"):
        return validate_replicaset(obj) + (_selector_immutable(obj, old) if old is not None else [])
    if kind == ("apps/v1", "StatefulSet"):
        return validate_statefulset_update(obj, old) if old is not None else validate_statefulset(obj)
    if kind == ("discovery.k8s.io/v1", "EndpointSlice"):
        errs = validate_endpointslice(obj, allow_loopback)
        if old is not None:
            errs += immutable(obj.get("addressType"), old.get("addressType"), "addressType")
        return errs
    if kind == ("v1", "Endpoints"):
        return validate_endpoints(obj, allow_loopback)
    if kind == ("v1", "ConfigMap"):
        return validate_configmap(obj) + (_immutable_data(obj, old, ("data", "binaryData")) if old else [])
    if kind == ("v1", "Secret"):
        errs = validate_secret(obj)
        if old is not None:
            errs += immutable(obj.get("type"), old.get("type"), "type")
            errs += _immutable_data(obj, old, ("data",))
        return errs
    if kind == ("v1", "Namespace"):
        return validate_namespace(obj)
    if kind == ("v1", "Node"):
        return validate_node(obj)
    if kind == ("networking.k8s.io/v1", "Ingress"):
        return validate_ingress(obj)
    if info.group == "rbac.authorization.k8s.io":
        return rbac_validation.validate(info.kind, obj, old)
    return validate_generic(obj, info)
