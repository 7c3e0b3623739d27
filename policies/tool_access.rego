# Layer 2, tool access: the caller's trust level decides which tool categories it
# may use, and argument rules bound what a permitted tool may touch.
#
#   category    trusted  semi-trusted  untrusted
#   filesystem  yes      yes           yes
#   database    yes      yes           no
#   api         yes      yes           no
#   shell       yes      no            no
#   network     yes      no            no
#
# Argument rules apply when a call is made (phase "call"), not to list items:
#   - a filesystem path must be absolute, free of "..", under an allowed root;
#   - a network URL must be https to a host on the allowlist.
package mcp.tool_access

import rego.v1

level := data.mcp_pep.identities[input.identity.spiffe_id]

default allow := false

# Plumbing acts on no tool; it needs a known level like everything else.
allow if {
	data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]]
	data.mcp.catalog.plumbing
}

allow if {
	entry := data.mcp.catalog.entry
	entry.category in data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]].categories
	arguments_allowed(entry)
}

arguments_allowed(entry) if {
	not entry.path_argument
	not entry.url_argument
}

arguments_allowed(_) if input.phase == "list"

arguments_allowed(entry) if {
	input.phase == "call"
	path_allowed(argument(entry.path_argument))
	not entry.url_argument
}

arguments_allowed(entry) if {
	input.phase == "call"
	url_host(argument(entry.url_argument)) in data.mcp_pep.network_hosts
	not entry.path_argument
}

argument(name) := object.get(object.get(input.mcp, "arguments", {}), name, "")

path_allowed(path) if {
	is_string(path)
	not ".." in split(path, "/")
	some root in data.mcp_pep.filesystem_roots
	startswith(path, root)
}

url_host(url) := host if {
	is_string(url)
	parts := regex.find_all_string_submatch_n(`^https://([a-z0-9.-]+)(:443)?(/[^@]*)?$`, lower(url), 1)
	host := parts[0][1]
}

# Why a message is refused; evaluated only for denied messages.

deny contains sprintf("tool_access.category: %s may not use %s tools", [level, category]) if {
	category := data.mcp.catalog.entry.category
	not category in data.mcp_pep.levels[level].categories
}

deny contains sprintf("tool_access.path: %q is not under an allowed root", [path]) if {
	input.phase == "call"
	path := argument(data.mcp.catalog.entry.path_argument)
	not path_allowed(path)
}

deny contains sprintf("tool_access.host: %q is not an allowed https host", [url]) if {
	input.phase == "call"
	url := argument(data.mcp.catalog.entry.url_argument)
	not url_host(url) in data.mcp_pep.network_hosts
}
