"""The budget engine: spend windows in Redis decided atomically by Lua scripts, rebuilt from Postgres."""
