# The decision entrypoint: both layers must allow.
#
# data.mcp.decision is what mcp-pep evaluates for every message (and for every item
# of a list result). It is {"allow": bool, "reasons": [string]}; every denial names
# the layer and the rule that refused.
package mcp

import rego.v1

default allow := false

allow if {
	data.mcp.trust_boundaries.allow
	data.mcp.tool_access.allow
}

reasons := sort(data.mcp.trust_boundaries.deny | data.mcp.tool_access.deny)

decision := {"allow": allow, "reasons": reasons}
