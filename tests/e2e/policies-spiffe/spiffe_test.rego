# Unit tests of spiffe.rego: `mcp-pep policy test --policy-dir tests/e2e/policies-spiffe`
# (spiffe.sh runs it). Not loaded by `mcp-pep run`.
package mcp_test

import rego.v1

import data.mcp

agent(name, source) := {
	"spiffe_id": sprintf("spiffe://mcp-identity.local/ns/mcp-agents/sa/%s", [name]),
	"trust_domain": "mcp-identity.local",
	"path": sprintf("/ns/mcp-agents/sa/%s", [name]),
	"source": source,
}

call(tool, identity) := {"identity": identity, "mcp": {"method": "tools/call", "tool": tool}}

test_trusted_agent_may_call_get_sum if {
	mcp.decision == {"allow": true, "reasons": []} with input as call("get-sum", agent("trusted-agent", "mtls"))
}

test_trusted_agent_by_jwt_svid_may_call_get_sum if {
	mcp.decision.allow with input as call("get-sum", agent("trusted-agent", "jwt-svid"))
}

test_untrusted_agent_get_sum_denied_naming_it if {
	d := mcp.decision with input as call("get-sum", agent("untrusted-agent", "mtls"))
	d.allow == false
	d.reasons == ["e2e.identity: get-sum is for the trusted agent, not spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent (mtls)"]
}

test_semi_trusted_agent_get_sum_denied if {
	not mcp.decision.allow with input as call("get-sum", agent("semi-trusted-agent", "token"))
}

test_no_identity_get_sum_denied if {
	d := mcp.decision with input as call("get-sum", null)
	d.allow == false
	d.reasons == ["e2e.identity: get-sum is for the trusted agent, not no identity"]
}

test_get_env_denied_to_the_trusted_agent_too if {
	d := mcp.decision with input as call("get-env", agent("trusted-agent", "mtls"))
	d.allow == false
	d.reasons == ["e2e.sensitive: get-env is not callable"]
}

test_echo_allowed_to_everyone if {
	mcp.decision.allow with input as call("echo", agent("untrusted-agent", "mtls"))
	mcp.decision.allow with input as call("echo", null)
}

test_other_methods_allowed if {
	mcp.decision.allow with input as {"identity": null, "mcp": {"method": "tools/list", "tool": null}}
	mcp.decision.allow with input as {"identity": null, "mcp": {"method": null, "tool": null}}
}
