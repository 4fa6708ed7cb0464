-- Argo CD health check for regcred.dev/RegistryCredential, from the conditions regcred writes
-- (the kstatus conventions; see the README, "GitOps"). Written for Argo CD's restricted Lua
-- libraries (base and table only): no string, math or os functions.
local function said(c)
  return (c.reason or "") .. ": " .. (c.message or "")
end

if obj.metadata.deletionTimestamp ~= nil then
  return { status = "Progressing", message = "being deleted: regcred removes its copies, then its finalizer" }
end
local st = obj.status
if st == nil or st.observedGeneration == nil or st.observedGeneration ~= obj.metadata.generation then
  return { status = "Progressing", message = "waiting for regcred to observe this generation" }
end

local ready, reconciling, stalled
for _, c in ipairs(st.conditions or {}) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Reconciling" then
    reconciling = c
  elseif c.type == "Stalled" then
    stalled = c
  end
end

if stalled ~= nil and stalled.status == "True" then
  return { status = "Degraded", message = said(stalled) }
end
if reconciling ~= nil and reconciling.status == "True" then
  return { status = "Progressing", message = said(reconciling) }
end
if ready == nil then
  return { status = "Progressing", message = "waiting for regcred to report Ready" }
end
if ready.status == "True" and ready.reason == "Suspended" then
  return { status = "Suspended", message = ready.message }
end
if ready.status == "True" then
  return { status = "Healthy", message = ready.message }
end
return { status = "Progressing", message = said(ready) }
