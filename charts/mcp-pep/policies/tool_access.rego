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
# Argument rules apply when a call is made (phase "call"), not to list items or
# subscribed resources (phases "list" and "subscribe": no arguments):
#   - a filesystem path must be absolute, free of "..", under an allowed root, and
#     printable ASCII without "\" or "%" (nothing a server could decode or normalise
#     into a separator or a dot segment after the decision);
#   - a network URL must be https to a host on the allowlist.
#
# An input request (kind "input_request") is decided as the call that caused it, with
# the category rule but not the argument rules (they were checked when the call was
# made); what it asks is bounded instead: a URL elicitation sends the user to its URL,
# which must pass the network URL rule.
package mcp.tool_access

import rego.v1

level := data.mcp_pep.identities[input.identity.spiffe_id]

default allow := false

# Plumbing acts on no tool; it needs a known level like everything else.
allow if {
	data.mcp.catalog.plumbing
	data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]]
}

allow if {
	input.kind != "input_request"
	entry := data.mcp.catalog.entry
	entry.category in data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]].categories
	arguments_allowed(entry)
}

# An input request: the category of the call that asks, and what it asks instead of
# the call's arguments. (A clause of its own keeps the check off the path of every call.)
allow if {
	input.kind == "input_request"
	data.mcp.catalog.entry.category in data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]].categories
	asking_allowed
}

arguments_allowed(entry) if {
	not entry.path_argument
	not entry.url_argument
}

arguments_allowed(_) if input.phase in {"list", "subscribe"}

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

# What an input request asks is bounded only where it leaves the conversation: a URL
# elicitation sends the user to its URL.
asking_allowed if not url_elicitation

asking_allowed if {
	url_elicitation
	host_allowed(governed_url)
}

# The argument rules apply to a call being made, nothing else; they name their reasons
# only then.
checks_arguments if {
	input.phase == "call"
	input.kind != "input_request"
}

url_elicitation if {
	input.kind == "input_request"
	input.mcp.input_request.method == "elicitation/create"
	asked.mode == "url"
}

# The input request's params; a server that sent no object asks nothing of them.
asked := input.mcp.input_request.params if is_object(input.mcp.input_request.params)

else := {}

# The call's arguments; a call without any (null) has none of them.
arguments := input.mcp.arguments if is_object(input.mcp.arguments)

else := {}

argument(name) := object.get(arguments, name, "")

# Not odd_path (below), spelled out: the allowed path of every call then calls no
# function of three clauses.
path_allowed(path) if {
	is_string(path)
	regex.match(`^[ -~]*$`, path)
	not contains(path, `\`)
	not contains(path, "%")
	not ".." in split(path, "/")
	some root in data.mcp_pep.filesystem_roots
	startswith(path, root)
}

# A path the tool server could still turn into another one after the decision: outside
# printable ASCII (NUL ends a C string; NFKC makes U+2025 "..", U+FF0F "/"), a backslash
# (a separator on Windows) or a percent sign (%2e%2e is ".." to a server that decodes).
odd_path(path) if {
	is_string(path)
	not regex.match(`^[ -~]*$`, path)
}

odd_path(path) if {
	is_string(path)
	contains(path, `\`)
}

odd_path(path) if {
	is_string(path)
	contains(path, "%")
}

# Case-insensitive on ASCII only: lower() of the whole URL would map non-ASCII
# letters onto ASCII in OPA (Go's simple case mapping: U+0130 -> "i").
url_host(url) := lower(host) if {
	is_string(url)
	parts := regex.find_all_string_submatch_n(`^[Hh][Tt][Tt][Pp][Ss]://([A-Za-z0-9.-]+)(:443)?(/[^@]*)?$`, url, 1)
	host := parts[0][1]
}

host_allowed(url) if url_host(url) in data.mcp_pep.network_hosts

# The URL the host rule governs: a call's URL argument, or where a URL elicitation
# sends the user ("" when missing, as a missing argument).
governed_url := argument(data.mcp.catalog.entry.url_argument) if checks_arguments

governed_url := object.get(asked, "url", "") if url_elicitation

# Why a message is refused; evaluated only for denied messages.

deny contains sprintf("tool_access.category: %s may not use %s tools", [level, category]) if {
	category := data.mcp.catalog.entry.category
	categories := data.mcp_pep.levels[level].categories
	not category in categories
}

deny contains sprintf("tool_access.path: %s is not under an allowed root", [data.mcp.catalog.quote(path)]) if {
	checks_arguments
	path := argument(data.mcp.catalog.entry.path_argument)
	not odd_path(path)
	not path_allowed(path)
}

deny contains sprintf("tool_access.path: %s may hold only printable ASCII, without backslash or percent sign", [data.mcp.catalog.quote(path)]) if {
	checks_arguments
	path := argument(data.mcp.catalog.entry.path_argument)
	odd_path(path)
}

deny contains sprintf("tool_access.host: %s is not an allowed https host", [data.mcp.catalog.quote(url)]) if {
	url := governed_url
	not host_allowed(url)
}
