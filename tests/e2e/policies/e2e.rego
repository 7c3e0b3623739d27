# The e2e policy: every well-formed message is allowed except calls to get-env,
# which would hand the agent the tool server's whole environment.
package mcp

import rego.v1

sensitive_tools := {"get-env"}

decision := {"allow": false, "reasons": [sprintf("e2e.sensitive: %s is not callable", [input.mcp.tool])]} if {
	input.mcp.method == "tools/call"
	input.mcp.tool in sensitive_tools
} else := {"allow": true, "reasons": []}
