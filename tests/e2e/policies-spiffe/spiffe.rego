# The SPIFFE e2e policy (spiffe.sh): identity-aware, so the e2e proves that the caller's
# SPIFFE ID, as mcp-pep proved it (mTLS, JWT-SVID), reaches the policy.
#   - get-env is callable by no one (as in ../policies/e2e.rego);
#   - get-sum only by the trusted agent; anyone else is denied with a reason naming their
#     SPIFFE ID and how it was proven (input.identity.source), or "no identity";
#   - everything else is allowed.
# The rules form one `else` chain: exactly one decision, never a conflict. tools/list items
# are decided as the tools/call that would use them, so get-sum is hidden from the others too.
package mcp

import rego.v1

trusted_agent := "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent"

sensitive_tools := {"get-env"}

# Tools only the trusted agent may call.
trusted_only_tools := {"get-sum"}

is_trusted_agent if input.identity.spiffe_id == trusted_agent

# Who is calling, for the reasons: "SPIFFE_ID (SOURCE)" or "no identity".
caller := sprintf("%s (%s)", [input.identity.spiffe_id, input.identity.source]) if {
	input.identity != null
} else := "no identity"

decision := {"allow": false, "reasons": [sprintf("e2e.sensitive: %s is not callable", [input.mcp.tool])]} if {
	input.mcp.method == "tools/call"
	input.mcp.tool in sensitive_tools
} else := {"allow": false, "reasons": [sprintf("e2e.identity: %s is for the trusted agent, not %s", [input.mcp.tool, caller])]} if {
	input.mcp.method == "tools/call"
	input.mcp.tool in trusted_only_tools
	not is_trusted_agent
} else := {"allow": true, "reasons": []}
