# Layer 1, trust boundaries: the caller's trust level (from its SPIFFE ID) decides
# which operations it may perform.
#
#   trusted       read, write, execute, admin
#   semi-trusted  read, list
#   untrusted     read
#
# and which input requests (kind "input_request", a modern server asking the caller
# back in the middle of an action) it may be asked:
#
#   trusted       elicitation/create, sampling/createMessage, roots/list
#   semi-trusted  elicitation/create, roots/list
#   untrusted     elicitation/create
#
# An input request is decided as the action that caused it: the operation must be
# allowed too. Protocol plumbing (data.mcp.catalog.plumbing) is open to every caller
# with a known level.
package mcp.trust_boundaries

import rego.v1

level := data.mcp_pep.identities[input.identity.spiffe_id]

default allow := false

# Plumbing first: most messages are not, and then the level is not looked up twice.
allow if {
	data.mcp.catalog.plumbing
	data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]]
}

allow if {
	input.kind != "input_request"
	ops := data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]].operations
	data.mcp.catalog.entry.operation in ops
}

# An input request asks the caller for something: the level must allow the action
# that asks and may be asked for the method. (A clause of its own keeps the check off
# the path of every call.)
allow if {
	input.kind == "input_request"
	grants := data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]]
	data.mcp.catalog.entry.operation in grants.operations
	input.mcp.input_request.method in grants.input_requests
}

# The input methods some level may be asked for: the ones policy governs.
input_methods contains method if {
	some grants in data.mcp_pep.levels
	some method in grants.input_requests
}

# Why a message is refused; evaluated only for denied messages.

deny contains "trust_boundaries.identity: the caller has no SPIFFE identity" if {
	not input.identity.spiffe_id
}

deny contains sprintf("trust_boundaries.identity: %s has no trust level", [input.identity.spiffe_id]) if {
	input.identity.spiffe_id
	not level
}

deny contains sprintf("trust_boundaries.level: trust level %q is not defined", [level]) if {
	not data.mcp_pep.levels[level]
}

deny contains sprintf("trust_boundaries.method: method %s is not governed by policy", [data.mcp.catalog.quote(method)]) if {
	not data.mcp.catalog.plumbing
	not data.mcp.catalog.action
	method := object.get(input, ["mcp", "method"], null)
}

deny contains sprintf("trust_boundaries.catalog: %s %s is not in the catalog", [input.mcp.method, data.mcp.catalog.quote(subject)]) if {
	data.mcp.catalog.action
	not data.mcp.catalog.entry
	subject := data.mcp.catalog.subject
}

deny contains sprintf("trust_boundaries.operation: %s may not %s", [level, op]) if {
	op := data.mcp.catalog.entry.operation
	ops := data.mcp_pep.levels[level].operations
	not op in ops
}

# A known input method is named as it is (it comes from the data); anything else the
# server sent is quoted.
deny contains sprintf("trust_boundaries.input: %s may not be asked for %s", [level, method]) if {
	input.kind == "input_request"
	method := input.mcp.input_request.method
	method in input_methods
	grants := data.mcp_pep.levels[level]
	not method in object.get(grants, "input_requests", [])
}

deny contains sprintf("trust_boundaries.input: input method %s is not governed by policy", [data.mcp.catalog.quote(method)]) if {
	input.kind == "input_request"
	method := object.get(input, ["mcp", "input_request", "method"], null)
	not method in input_methods
}
