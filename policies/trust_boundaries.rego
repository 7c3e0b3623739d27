# Layer 1, trust boundaries: the caller's trust level (from its SPIFFE ID) decides
# which operations it may perform.
#
#   trusted       read, write, execute, admin
#   semi-trusted  read, list
#   untrusted     read
#
# Protocol plumbing (data.mcp.catalog.plumbing) is open to every caller with a known level.
package mcp.trust_boundaries

import rego.v1

level := data.mcp_pep.identities[input.identity.spiffe_id]

default allow := false

allow if {
	data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]]
	data.mcp.catalog.plumbing
}

allow if {
	ops := data.mcp_pep.levels[data.mcp_pep.identities[input.identity.spiffe_id]].operations
	data.mcp.catalog.entry.operation in ops
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
