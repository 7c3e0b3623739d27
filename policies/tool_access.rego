# Layer 2, tool access: the caller's trust level decides which tool categories it
# may use, and argument rules bound what a permitted tool may touch.
#
#   category    trusted  semi-trusted  untrusted
#   filesystem  yes      yes           yes
#   database    yes      yes           no
#   api         yes      yes           no
#   shell       yes      no            no
#   network     yes      no            no
package mcp.tool_access

import rego.v1

import data.mcp.catalog
import data.mcp.trust_boundaries

categories := data.mcp_pep.levels[trust_boundaries.level].categories

default allow := false

# Plumbing acts on no tool; trust boundaries already required a known level.
allow if {
	count(deny) == 0
	catalog.plumbing
}

allow if {
	count(deny) == 0
	catalog.entry.category in categories
}

deny contains sprintf("tool_access.category: %s may not use %s tools", [trust_boundaries.level, category]) if {
	category := catalog.entry.category
	trust_boundaries.level
	not category in categories
}

# Argument rules apply when the call is made (phase "call"), not to list items.

# Filesystem paths must be absolute, free of "..", and under an allowed root.
deny contains sprintf("tool_access.path: %q is not under an allowed root", [path]) if {
	input.phase == "call"
	arg := catalog.entry.path_argument
	path := object.get(object.get(input.mcp, "arguments", {}), arg, "")
	not path_allowed(path)
}

path_allowed(path) if {
	is_string(path)
	not ".." in split(path, "/")
	some root in data.mcp_pep.filesystem_roots
	startswith(path, root)
}

# Network URLs must be https to a host on the allowlist.
deny contains sprintf("tool_access.host: %q is not an allowed https host", [url]) if {
	input.phase == "call"
	arg := catalog.entry.url_argument
	url := object.get(object.get(input.mcp, "arguments", {}), arg, "")
	not url_host(url) in data.mcp_pep.network_hosts
}

url_host(url) := host if {
	is_string(url)
	parts := regex.find_all_string_submatch_n(`^https://([a-z0-9.-]+)(:443)?(/[^@]*)?$`, lower(url), 1)
	host := parts[0][1]
}
