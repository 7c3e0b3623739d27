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
	host_allowed(argument(entry.url_argument))
	not entry.path_argument
}

# The call's arguments; a call without any (null) has none of them.
arguments := input.mcp.arguments if is_object(input.mcp.arguments)

else := {}

argument(name) := object.get(arguments, name, "")

path_allowed(path) if {
	is_string(path)
	not ".." in split(path, "/")
	some root in data.mcp_pep.filesystem_roots
	startswith(path, root)
}

# Case-insensitive on ASCII only: lower() of the whole URL would map non-ASCII
# letters onto ASCII in OPA (Go's simple case mapping: U+0130 -> "i").
url_host(url) := lower(host) if {
	is_string(url)
	parts := regex.find_all_string_submatch_n(`^[Hh][Tt][Tt][Pp][Ss]://([A-Za-z0-9.-]+)(:443)?(/[^@]*)?$`, url, 1)
	host := parts[0][1]
}

host_allowed(url) if url_host(url) in data.mcp_pep.network_hosts

# Why a message is refused; evaluated only for denied messages.

deny contains sprintf("tool_access.category: %s may not use %s tools", [level, category]) if {
	category := data.mcp.catalog.entry.category
	categories := data.mcp_pep.levels[level].categories
	not category in categories
}

deny contains sprintf("tool_access.path: %s is not under an allowed root", [data.mcp.catalog.quote(path)]) if {
	input.phase == "call"
	path := argument(data.mcp.catalog.entry.path_argument)
	not path_allowed(path)
}

deny contains sprintf("tool_access.host: %s is not an allowed https host", [data.mcp.catalog.quote(url)]) if {
	input.phase == "call"
	url := argument(data.mcp.catalog.entry.url_argument)
	not host_allowed(url)
}
