# The decision entrypoint: both layers must allow.
#
# data.mcp.decision is what mcp-pep evaluates for every message (and for every item
# of a list result, every resource a subscriptions/listen names and every input
# request a modern server sends back). It is {"allow": bool, "reasons": [string]};
# every denial names the layer and the rule that refused.
#
# Each layer states what it allows positively (allow) and why it refuses (deny). The
# reasons are only computed for a denied message: the allowed path, the hot one, costs
# a few lookups.
package mcp

import rego.v1

decision := {"allow": true, "reasons": []} if {
	data.mcp.trust_boundaries.allow
	data.mcp.tool_access.allow
} else := {"allow": false, "reasons": reasons}

reasons := sorted if {
	sorted := sort(data.mcp.trust_boundaries.deny | data.mcp.tool_access.deny)
	count(sorted) > 0
} else := ["mcp.decision: denied (no layer allowed the message)"]
