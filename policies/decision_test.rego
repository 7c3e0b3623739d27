# Unit tests of the entrypoint data.mcp.decision (mcp.rego): both layers together,
# run by both `mcp-pep policy test` (regorus) and tests/opa/opa_test.py (real OPA).
#
# The decision is {"allow": bool, "reasons": [string]}: an allowed message has no
# reasons; a denied one has the sorted reasons of both layers, each naming its layer
# and rule ("trust_boundaries.operation: ...", "tool_access.path: ...").
#
# The full matrix (3 levels x the 6 catalog tools, with good arguments):
#
#   tool             trusted  semi-trusted               untrusted
#   read_file        allow    allow                      allow
#   write_file       allow    operation                  operation
#   query_database   allow    allow                      category
#   call_api         allow    allow                      category
#   execute_command  allow    category + operation       category + operation
#   fetch_url        allow    category                   category
package mcp.decision_test

import rego.v1

# --- inputs of the documented shape (docs/policy-input.md) ----------------------

trusted := "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent"

semi_trusted := "spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent"

untrusted := "spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent"

stranger := "spiffe://mcp-identity.local/ns/mcp-agents/sa/stranger-agent"

identity(spiffe_id) := {
	"spiffe_id": spiffe_id,
	"trust_domain": "mcp-identity.local",
	"path": trim_prefix(spiffe_id, "spiffe://mcp-identity.local"),
	"source": "local",
}

http_method := {"request": "POST", "notification": "POST", "response": "POST", "stream": "GET", "session_end": "DELETE"}

blank_mcp := {
	"method": null, "id": null, "tool": null, "prompt": null, "resource": null,
	"arguments": null, "is_error": false, "batch": false,
	"session_id": "s-1", "protocol_version": "2025-11-25",
}

# who: an identity object or null.
message(kind, phase, who, mcp) := {
	"version": 1,
	"kind": kind,
	"phase": phase,
	"identity": who,
	"token": null,
	"mcp": object.union(blank_mcp, mcp),
	"http": {"method": http_method[kind], "path": "/mcp"},
}

tool_call(spiffe_id, tool, arguments) := message(
	"request", "call", identity(spiffe_id),
	{"method": "tools/call", "id": 7, "tool": tool, "arguments": arguments},
)

anonymous_tool_call(tool, arguments) := message("request", "call", null, {"method": "tools/call", "id": 7, "tool": tool, "arguments": arguments})

request(who, method) := message("request", "call", who, {"method": method, "id": 1})

notification(who, method) := message("notification", "call", who, {"method": method})

prompt_get(spiffe_id, name) := message("request", "call", identity(spiffe_id), {"method": "prompts/get", "id": 7, "prompt": name, "arguments": {}})

resource_read(spiffe_id, uri) := message("request", "call", identity(spiffe_id), {"method": "resources/read", "id": 7, "resource": uri})

# An item of a tools/list result, as mcp-pep's list filter builds it (src/policy/filter.rs).
list_item(spiffe_id, tool) := message("request", "list", identity(spiffe_id), {"method": "tools/call", "id": 3, "tool": tool})

decision(msg) := d if {
	d := data.mcp.decision with input as msg
}

allowed := {"allow": true, "reasons": []}

denied(reasons) := {"allow": false, "reasons": reasons}

# Good arguments for each catalog tool.
good_arguments := {
	"read_file": {"path": "/workspace/README.md"},
	"write_file": {"path": "/workspace/out.txt", "content": "hello"},
	"query_database": {"query": "select 1"},
	"call_api": {"endpoint": "/v1/items"},
	"execute_command": {"command": "ls"},
	"fetch_url": {"url": "https://api.example.com/v1/items"},
}

good_call(spiffe_id, tool) := tool_call(spiffe_id, tool, good_arguments[tool])

# The plumbing methods of catalog.json, spelled out: a change to the list must show here.
plumbing_requests := ["initialize", "ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list"]

plumbing_notifications := [
	"notifications/initialized", "notifications/cancelled",
	"notifications/progress", "notifications/roots/list_changed",
]

# A reason names its layer and rule: "<layer>.<rule>: <why>".
reason_pattern := `^(trust_boundaries\.(identity|level|method|catalog|operation)|tool_access\.(category|path|host)): .+`

well_formed_denial(d) if {
	d.allow == false
	count(d.reasons) > 0
	every reason in d.reasons {
		regex.match(reason_pattern, reason)
	}
	d.reasons == sort(d.reasons)
	count(d.reasons) == count({r | some r in d.reasons})
}

# Denied with exactly one reason, starting with prefix (for values whose quoting in
# the reason is the policy's choice).
denied_by(d, prefix) if {
	well_formed_denial(d)
	count(d.reasons) == 1
	startswith(d.reasons[0], prefix)
}

# --- the matrix: trusted ---------------------------------------------------------

test_trusted_read_file if {
	decision(good_call(trusted, "read_file")) == allowed
}

test_trusted_write_file if {
	decision(good_call(trusted, "write_file")) == allowed
}

test_trusted_query_database if {
	decision(good_call(trusted, "query_database")) == allowed
}

test_trusted_call_api if {
	decision(good_call(trusted, "call_api")) == allowed
}

test_trusted_execute_command if {
	decision(good_call(trusted, "execute_command")) == allowed
}

test_trusted_fetch_url if {
	decision(good_call(trusted, "fetch_url")) == allowed
}

# --- the matrix: semi-trusted ----------------------------------------------------

test_semi_trusted_read_file if {
	decision(good_call(semi_trusted, "read_file")) == allowed
}

test_semi_trusted_write_file if {
	decision(good_call(semi_trusted, "write_file")) == denied(["trust_boundaries.operation: semi-trusted may not write"])
}

test_semi_trusted_query_database if {
	decision(good_call(semi_trusted, "query_database")) == allowed
}

test_semi_trusted_call_api if {
	decision(good_call(semi_trusted, "call_api")) == allowed
}

test_semi_trusted_execute_command if {
	decision(good_call(semi_trusted, "execute_command")) == denied([
		"tool_access.category: semi-trusted may not use shell tools",
		"trust_boundaries.operation: semi-trusted may not execute",
	])
}

test_semi_trusted_fetch_url if {
	decision(good_call(semi_trusted, "fetch_url")) == denied(["tool_access.category: semi-trusted may not use network tools"])
}

# --- the matrix: untrusted -------------------------------------------------------

test_untrusted_read_file if {
	decision(good_call(untrusted, "read_file")) == allowed
}

test_untrusted_write_file if {
	decision(good_call(untrusted, "write_file")) == denied(["trust_boundaries.operation: untrusted may not write"])
}

test_untrusted_query_database if {
	decision(good_call(untrusted, "query_database")) == denied(["tool_access.category: untrusted may not use database tools"])
}

test_untrusted_call_api if {
	decision(good_call(untrusted, "call_api")) == denied(["tool_access.category: untrusted may not use api tools"])
}

test_untrusted_execute_command if {
	decision(good_call(untrusted, "execute_command")) == denied([
		"tool_access.category: untrusted may not use shell tools",
		"trust_boundaries.operation: untrusted may not execute",
	])
}

test_untrusted_fetch_url if {
	decision(good_call(untrusted, "fetch_url")) == denied(["tool_access.category: untrusted may not use network tools"])
}

# --- the documented examples (docs/policy-input.md) ------------------------------

test_documented_tools_call_allowed if {
	doc := {
		"version": 1,
		"kind": "request",
		"phase": "call",
		"identity": {
			"spiffe_id": "spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent",
			"trust_domain": "mcp-identity.local",
			"path": "/ns/mcp-agents/sa/semi-trusted-agent",
			"source": "local",
		},
		"token": null,
		"mcp": {
			"method": "tools/call", "id": 7, "tool": "read_file", "prompt": null, "resource": null,
			"arguments": {"path": "/workspace/README.md"}, "is_error": false, "batch": false,
			"session_id": "s-1", "protocol_version": "2025-11-25",
		},
		"http": {"method": "POST", "path": "/mcp"},
	}
	decision(doc) == allowed
}

# The documented response, stream and session_end examples carry no identity.
test_documented_methodless_messages_need_an_identity if {
	every kind in ["response", "stream", "session_end"] {
		decision(message(kind, "call", null, {"id": "srv-1"})) == denied(["trust_boundaries.identity: the caller has no SPIFFE identity"])
	}
}

# --- plumbing --------------------------------------------------------------------

test_plumbing_allowed_for_every_known_level if {
	every caller in [trusted, semi_trusted, untrusted] {
		every method in plumbing_requests {
			decision(request(identity(caller), method)) == allowed
		}
		every method in plumbing_notifications {
			decision(notification(identity(caller), method)) == allowed
		}
		every kind in ["response", "stream", "session_end"] {
			decision(message(kind, "call", identity(caller), {})) == allowed
		}
	}
}

test_plumbing_denied_to_unknown_identity if {
	reasons := [sprintf("trust_boundaries.identity: %s has no trust level", [stranger])]
	every method in plumbing_requests {
		decision(request(identity(stranger), method)) == denied(reasons)
	}
	every method in plumbing_notifications {
		decision(notification(identity(stranger), method)) == denied(reasons)
	}
}

test_plumbing_denied_to_no_identity if {
	reasons := ["trust_boundaries.identity: the caller has no SPIFFE identity"]
	every method in plumbing_requests {
		decision(request(null, method)) == denied(reasons)
	}
	every method in plumbing_notifications {
		decision(notification(null, method)) == denied(reasons)
	}
}

# --- unknown methods, tools, identities ------------------------------------------

test_unknown_method_denied if {
	d := decision(request(identity(trusted), "completion/complete"))
	d == denied([`trust_boundaries.method: method "completion/complete" is not governed by policy`])
}

test_unknown_notification_denied if {
	d := decision(notification(identity(trusted), "notifications/message"))
	d == denied([`trust_boundaries.method: method "notifications/message" is not governed by policy`])
}

test_request_without_method_denied if {
	denied_by(decision(message("request", "call", identity(trusted), {"id": 1})), "trust_boundaries.method: ")
}

test_unknown_tool_denied if {
	d := decision(tool_call(trusted, "delete_everything", {"path": "/workspace/a"}))
	d == denied([`trust_boundaries.catalog: tools/call "delete_everything" is not in the catalog`])
}

test_tool_call_without_tool_denied if {
	denied_by(decision(message("request", "call", identity(trusted), {"method": "tools/call", "id": 7})), "trust_boundaries.catalog: ")
}

test_unknown_identity_denied if {
	d := decision(good_call(stranger, "read_file"))
	d == denied(["trust_boundaries.identity: spiffe://mcp-identity.local/ns/mcp-agents/sa/stranger-agent has no trust level"])
}

test_no_identity_denied if {
	d := decision(anonymous_tool_call("read_file", {"path": "/workspace/README.md"}))
	d == denied(["trust_boundaries.identity: the caller has no SPIFFE identity"])
}

# Argument reasons are given even when the caller is refused anyway.
test_reasons_of_both_layers_sorted if {
	d1 := decision(tool_call(stranger, "read_file", {"path": "/etc/passwd"}))
	d1 == denied([
		`tool_access.path: "/etc/passwd" is not under an allowed root`,
		"trust_boundaries.identity: spiffe://mcp-identity.local/ns/mcp-agents/sa/stranger-agent has no trust level",
	])
	d2 := decision(anonymous_tool_call("fetch_url", {"url": "https://evil.com/"}))
	d2 == denied([
		`tool_access.host: "https://evil.com/" is not an allowed https host`,
		"trust_boundaries.identity: the caller has no SPIFFE identity",
	])
	d3 := decision(tool_call(semi_trusted, "write_file", {"path": "/workspace/../etc/passwd"}))
	d3 == denied([
		`tool_access.path: "/workspace/../etc/passwd" is not under an allowed root`,
		"trust_boundaries.operation: semi-trusted may not write",
	])
}

test_undefined_level_denied if {
	ids := {trusted: "auditor"}
	reasons := [`trust_boundaries.level: trust level "auditor" is not defined`]
	decision(request(identity(trusted), "ping")) == denied(reasons) with data.mcp_pep.identities as ids
	d := decision(good_call(trusted, "query_database")) with data.mcp_pep.identities as ids
	d == denied(reasons)
}

# --- argument rules at the decision level ----------------------------------------

test_bad_path_denied if {
	d := decision(tool_call(trusted, "read_file", {"path": "/workspace/../etc/passwd"}))
	d == denied([`tool_access.path: "/workspace/../etc/passwd" is not under an allowed root`])
}

test_bad_url_denied if {
	d := decision(tool_call(trusted, "fetch_url", {"url": "http://api.example.com/"}))
	d == denied([`tool_access.host: "http://api.example.com/" is not an allowed https host`])
}

test_call_without_arguments_denied if {
	denied_by(decision(tool_call(trusted, "read_file", null)), "tool_access.path: ")
	denied_by(decision(tool_call(trusted, "write_file", null)), "tool_access.path: ")
	denied_by(decision(tool_call(trusted, "fetch_url", null)), "tool_access.host: ")
	decision(tool_call(trusted, "query_database", null)) == allowed
}

# --- prompts and resources -------------------------------------------------------

test_prompt_not_in_catalog_denied if {
	d := decision(prompt_get(trusted, "summarise"))
	d == denied([`trust_boundaries.catalog: prompts/get "summarise" is not in the catalog`])
}

test_prompt_in_catalog_follows_both_matrices if {
	prompts := {
		"summarise": {"category": "filesystem", "operation": "read"},
		"deploy": {"category": "shell", "operation": "execute"},
	}
	decision(prompt_get(untrusted, "summarise")) == allowed with data.mcp_pep.prompts as prompts
	decision(prompt_get(trusted, "deploy")) == allowed with data.mcp_pep.prompts as prompts
	d := decision(prompt_get(semi_trusted, "deploy")) with data.mcp_pep.prompts as prompts
	d == denied([
		"tool_access.category: semi-trusted may not use shell tools",
		"trust_boundaries.operation: semi-trusted may not execute",
	])
}

test_prompt_without_name_denied if {
	denied_by(decision(prompt_get(trusted, null)), "trust_boundaries.catalog: ")
}

test_resource_not_in_catalog_denied if {
	d := decision(resource_read(trusted, "file:///workspace/notes.md"))
	d == denied([`trust_boundaries.catalog: resources/read "file:///workspace/notes.md" is not in the catalog`])
}

test_resource_in_catalog_follows_both_matrices if {
	resources := {
		"file:///workspace/notes.md": {"category": "filesystem", "operation": "read"},
		"db://orders": {"category": "database", "operation": "read"},
	}
	decision(resource_read(untrusted, "file:///workspace/notes.md")) == allowed with data.mcp_pep.resources as resources
	decision(resource_read(semi_trusted, "db://orders")) == allowed with data.mcp_pep.resources as resources
	d := decision(resource_read(untrusted, "db://orders")) with data.mcp_pep.resources as resources
	d == denied(["tool_access.category: untrusted may not use database tools"])
}

# --- list items (phase "list") ---------------------------------------------------

test_list_items_skip_argument_rules if {
	every tool in ["read_file", "write_file", "query_database", "call_api", "execute_command", "fetch_url"] {
		decision(list_item(trusted, tool)) == allowed
	}
}

test_list_items_follow_the_matrix if {
	decision(list_item(semi_trusted, "read_file")) == allowed
	decision(list_item(semi_trusted, "query_database")) == allowed
	decision(list_item(untrusted, "read_file")) == allowed
	decision(list_item(semi_trusted, "write_file")) == denied(["trust_boundaries.operation: semi-trusted may not write"])
	decision(list_item(semi_trusted, "fetch_url")) == denied(["tool_access.category: semi-trusted may not use network tools"])
	decision(list_item(untrusted, "execute_command")) == denied([
		"tool_access.category: untrusted may not use shell tools",
		"trust_boundaries.operation: untrusted may not execute",
	])
	decision(list_item(stranger, "read_file")) == denied([sprintf("trust_boundaries.identity: %s has no trust level", [stranger])])
}

# --- the shape of every denial ---------------------------------------------------

# One denied input per deny rule of each layer; each denial is well formed and the
# rule shows up in it.
test_every_denial_names_layer_and_rule if {
	cases := [
		["trust_boundaries.identity: ", anonymous_tool_call("read_file", {"path": "/workspace/a"})],
		["trust_boundaries.identity: ", good_call(stranger, "read_file")],
		["trust_boundaries.method: ", request(identity(trusted), "logging/setLevel")],
		["trust_boundaries.catalog: ", tool_call(trusted, "nope", {})],
		["trust_boundaries.operation: ", good_call(untrusted, "write_file")],
		["tool_access.category: ", good_call(untrusted, "call_api")],
		["tool_access.path: ", tool_call(trusted, "read_file", {"path": "relative.txt"})],
		["tool_access.host: ", tool_call(trusted, "fetch_url", {"url": "https://evil.com/"})],
	]
	every case in cases {
		d := decision(case[1])
		well_formed_denial(d)
		some reason in d.reasons
		startswith(reason, case[0])
	}
}

test_allowed_decisions_have_no_reasons if {
	every msg in [
		good_call(trusted, "execute_command"),
		request(identity(untrusted), "initialize"),
		message("stream", "call", identity(semi_trusted), {}),
		list_item(semi_trusted, "call_api"),
	] {
		decision(msg) == {"allow": true, "reasons": []}
	}
}

# When neither layer says why, the decision still carries a reason.
test_denial_without_layer_reasons_gets_the_fallback if {
	d := decision(good_call(untrusted, "write_file")) with data.mcp.trust_boundaries.deny as set()
	d == denied(["mcp.decision: denied (no layer allowed the message)"])
}
