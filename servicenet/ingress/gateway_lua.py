"""The Lua actions the Gateway data plane loads (text): a route's weights, filters and timeout applied
per request from its ``spec`` map entry (:func:`servicenet.ingress.gateway_maps.spec`), so that
changing them is a runtime API map update, not a reload.

``sn_route`` (http-req) reads ``txn.f`` (the spec), and:
- mirrors: copies the request (method, path and query, headers and the buffered body) to each target
  from a HAProxy task, so the client never waits for it (the mirror's answer is dropped). The body is
  what ``wait-for-body`` buffered (up to ``tune.bufsize`` less the headers); a request whose
  Content-Length says more than that is not mirrored at all (``txn.mb`` is set to ``big``) rather
  than mirrored truncated; a chunked body is mirrored as far as it was buffered;
- weights: sets ``txn.b`` to a backend drawn by weight;
- RequestRedirect: sets ``txn.loc`` and ``txn.rc`` (the configuration answers the redirect);
- header modifiers and URL rewrites: applied in place; response header modifiers are left in
  ``txn.fr`` for ``sn_resp`` (http-res);
- the timeout: ``txn.tmo`` (milliseconds), applied by each backend's ``set-timeout server``.
"""

LUA = r"""
local cache, cached = {}, 0

local function dec(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse(spec)
  local items = cache[spec]
  if items then return items end
  items = {}
  for k, v in spec:gmatch("&([^&=]+)=([^&]*)") do items[#items + 1] = {k, dec(v)} end
  if cached > 10000 then cache, cached = {}, 0 end
  cache[spec], cached = items, cached + 1
  return items
end

local function split(v)
  local name, val = v:match("^([^:]*):(.*)$")
  return name, val
end

local methods = {GET = "get", HEAD = "head", PUT = "put", POST = "post", DELETE = "delete"}

local function mirror(txn, target, body)
  local verb = methods[txn.sf:method()] or "get"
  local url = "http://" .. target .. txn.sf:pathq()
  local hdrs = {}
  for name, vals in pairs(txn.http:req_get_headers()) do
    if name ~= "content-length" and name ~= "transfer-encoding" then
      local list = {}
      for i = 0, #vals do if vals[i] ~= nil then list[#list + 1] = vals[i] end end
      hdrs[name] = list
    end
  end
  hdrs["x-servicenet-mirror"] = {"1"}
  core.register_task(function()
    local hc = core.httpclient()
    pcall(function() hc[verb](hc, {url = url, headers = hdrs, body = body, timeout = 5000}) end)
  end)
end

-- the path after the matched PathPrefix "mp", under "base" (element-wise, as the specification says)
local function replace_prefix(path, mp, base)
  local rest = path:sub(#mp + 1)
  if base:sub(-1) == "/" then base = base:sub(1, -2) end
  if base == "" then
    if rest == "" or rest == "/" then return "/" end
    return rest
  end
  return base .. rest
end

core.register_action("sn_route", {"http-req"}, function(txn)
  local items = parse(txn:get_var("txn.f") or "")
  local o, total, ws, body_read, body = {}, 0, {}, false, nil
  for _, kv in ipairs(items) do
    local k, v = kv[1], kv[2]
    if k == "m" then
      local target, pct = v:match("^(.*):(%d+)$")
      if tonumber(pct) >= 100 or txn.f:rand(100) < tonumber(pct) then
        if not body_read then
          body_read = true
          body = txn.f:req_body()
          local want = tonumber(txn.sf:req_fhdr("content-length") or "")
          if want and #(body or "") < want then body = false end
        end
        if body == false then txn:set_var("txn.mb", "big") else mirror(txn, target, body) end
      end
    elseif k == "w" then
      local be, w = v:match("^(.*):(%d+)$")
      ws[#ws + 1] = {be, tonumber(w)}
      total = total + tonumber(w)
    elseif k == "hs" then local n, val = split(v); txn.http:req_set_header(n, val)
    elseif k == "ha" then local n, val = split(v); txn.http:req_add_header(n, val)
    elseif k == "hr" then txn.http:req_del_header((split(v)))
    elseif k:sub(1, 1) == "p" then o.resp = true
    else o[k] = v end
  end
  if total > 0 then
    local n = txn.f:rand(total)
    for _, bw in ipairs(ws) do
      if n < bw[2] then txn:set_var("txn.b", bw[1]); break end
      n = n - bw[2]
    end
  end
  if o.t then txn:set_var("txn.tmo", tonumber(o.t)) end
  if o.resp then txn:set_var("txn.fr", txn:get_var("txn.f")) end
  if o.rc then
    local sch = o.rs or (o.tls and "https" or "http")
    local prt = ""
    if o.rp then
      if not ((sch == "http" and o.rp == "80") or (sch == "https" and o.rp == "443")) then prt = ":" .. o.rp end
    elseif not o.rs then
      if not ((sch == "http" and o.lp == "80") or (sch == "https" and o.lp == "443")) then prt = ":" .. o.lp end
    end
    local q = txn.sf:query()
    local path
    if o.rf then
      path = o.rf .. ((q ~= nil and q ~= "") and ("?" .. q) or "")
    else
      path = txn.sf:path()
      if o.rx then path = replace_prefix(path, o.mp or "", o.rx) end
      local url = txn.sf:url()
      local qpos = url:find("?", 1, true)
      if qpos then path = path .. url:sub(qpos) end
    end
    txn:set_var("txn.loc", sch .. "://" .. (o.rh or txn:get_var("txn.host") or "") .. prt .. path)
    txn:set_var("txn.rc", o.rc)
    return
  end
  if o.uh then txn.http:req_set_header("host", o.uh) end
  if o.uf then txn.http:req_set_path(o.uf)
  elseif o.ux then txn.http:req_set_path(replace_prefix(txn.sf:path(), o.mp or "", o.ux)) end
end, 0)

core.register_action("sn_resp", {"http-res"}, function(txn)
  for _, kv in ipairs(parse(txn:get_var("txn.fr") or "")) do
    local k, v = kv[1], kv[2]
    if k == "ps" then local n, val = split(v); txn.http:res_set_header(n, val)
    elseif k == "pa" then local n, val = split(v); txn.http:res_add_header(n, val)
    elseif k == "pr" then txn.http:res_del_header((split(v))) end
  end
end, 0)
"""
