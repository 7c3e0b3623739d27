# Layer 1, trust boundaries: the caller's trust level (from its SPIFFE ID) decides
# which operations it may perform.
#
#   trusted       read, write, execute, admin
#   semi-trusted  read, list
#   untrusted     read
package mcp.trust_boundaries

import rego.v1

import data.mcp.catalog

level := data.mcp_pep.identities[input.identity.spiffe_id]

operations := data.mcp_pep.levels[level].operations

default allow := false

allow if {
	count(deny) == 0
	operations
	catalog.plumbing
}

allow if {
	count(deny) == 0
	catalog.entry.operation in operations
}

deny contains "trust_boundaries.identity: the caller has no SPIFFE identity" if {
	not input.identity.spiffe_id
}

deny contains sprintf("trust_boundaries.identity: %s has no trust level", [input.identity.spiffe_id]) if {
	input.identity.spiffe_id
	not level
}

deny contains sprintf("trust_boundaries.level: trust level %q is not defined", [level]) if {
	not operations
}

deny contains sprintf("trust_boundaries.method: method %q is not governed by policy", [input.mcp.method]) if {
	not catalog.plumbing
	not catalog.action
}

deny contains sprintf("trust_boundaries.catalog: %s %q is not in the catalog", [input.mcp.method, catalog.subject]) if {
	catalog.action
	not catalog.entry
}

deny contains sprintf("trust_boundaries.operation: %s may not %s", [level, op]) if {
	op := catalog.entry.operation
	operations
	not op in operations
}
