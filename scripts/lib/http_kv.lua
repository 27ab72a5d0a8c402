-- wrk script for scripts/bench_server.sh: 90% GET, 10% PUT (64-byte values) on the keys the
-- servers preload with --preload 10000 (key-0 .. key-9999), so every answer is 200 or 204.
local keys = 10000
local value = string.rep("w", 64)

function init(args)
  -- a different sequence per wrk thread (each has its own Lua state)
  math.randomseed(os.time() + tonumber(string.sub(tostring({}), 8), 16) % 100000)
end

function request()
  local k = math.random(0, keys - 1)
  if math.random(10) == 1 then
    return wrk.format("PUT", "/kv/key-" .. k, nil, value)
  end
  return wrk.format("GET", "/kv/key-" .. k)
end
