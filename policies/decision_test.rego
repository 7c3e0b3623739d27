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
#
# A modern (2026-07-28) message decides exactly as its legacy counterpart; a modern
# server's input requests (kind "input_request") follow a second matrix:
#
#   input method            trusted  semi-trusted  untrusted
#   elicitation/create      allow    allow         allow
#   sampling/createMessage  allow    input         input
#   roots/list              allow    allow         input
package mcp.decision_test

import rego.v1

# --- inputs of the documented shape (policy input contract v2) --------------------

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

http_method := {
	"request": "POST", "notification": "POST", "response": "POST",
	"stream": "GET", "session_end": "DELETE", "input_request": "POST",
}

# Every mcp field, as a legacy (session-based) message has them.
blank_mcp := {
	"method": null, "id": null, "tool": null, "prompt": null, "resource": null,
	"arguments": null, "is_error": false, "batch": false,
	"session_id": "s-1", "protocol_version": "2025-11-25", "era": "legacy",
	"client_capabilities": null, "input_responses": null, "request_state": null,
	"notifications": null, "input_request": null,
}

# What a modern message has instead: no session; version and capabilities from _meta.
modern_mcp := {
	"session_id": null, "protocol_version": "2026-07-28", "era": "modern",
	"client_capabilities": {"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {}},
}

# who: an identity object or null.
message(kind, phase, who, mcp) := {
	"version": 2,
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

# The same message in the modern era (object.union merges the mcp objects).
modern(msg) := object.union(msg, {"mcp": modern_mcp})

in_era("legacy", msg) := msg

in_era("modern", msg) := modern(msg)

# A resource a modern subscriptions/listen names, decided as a read of it.
subscribed(spiffe_id, uri) := modern(message("request", "subscribe", identity(spiffe_id), {"method": "resources/read", "id": 5, "resource": uri}))

# An entry of the input_required answer to a modern call: the call's own document,
# kind "input_request", with what the server asks.
asking(call, method, params) := object.union(modern(call), {
	"kind": "input_request",
	"mcp": {"input_request": {"key": "k-1", "method": method, "params": params}},
})

form_elicitation := {"mode": "form", "message": "Your name?", "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}

url_elicitation(url) := {"mode": "url", "message": "Sign in", "url": url, "elicitationId": "e-1"}

# Typical params of each input method.
asks := {
	"elicitation/create": form_elicitation,
	"sampling/createMessage": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 100},
	"roots/list": {},
}

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

# Requests of the modern era only.
modern_plumbing_requests := ["server/discover", "subscriptions/listen"]

plumbing_notifications := [
	"notifications/initialized", "notifications/cancelled",
	"notifications/progress", "notifications/roots/list_changed",
]

# A reason names its layer and rule: "<layer>.<rule>: <why>".
reason_pattern := `^(trust_boundaries\.(identity|level|method|catalog|operation|input)|tool_access\.(category|path|host)): .+`

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

# --- the matrix in the modern era ---------------------------------------------------

# The matrix above as a table: the reasons of each cell ([] = allowed).
matrix := {
	trusted: {tool: [] | some tool, _ in good_arguments},
	semi_trusted: {
		"read_file": [], "query_database": [], "call_api": [],
		"write_file": ["trust_boundaries.operation: semi-trusted may not write"],
		"execute_command": ["tool_access.category: semi-trusted may not use shell tools", "trust_boundaries.operation: semi-trusted may not execute"],
		"fetch_url": ["tool_access.category: semi-trusted may not use network tools"],
	},
	untrusted: {
		"read_file": [],
		"write_file": ["trust_boundaries.operation: untrusted may not write"],
		"query_database": ["tool_access.category: untrusted may not use database tools"],
		"call_api": ["tool_access.category: untrusted may not use api tools"],
		"execute_command": ["tool_access.category: untrusted may not use shell tools", "trust_boundaries.operation: untrusted may not execute"],
		"fetch_url": ["tool_access.category: untrusted may not use network tools"],
	},
}

outcome([]) := allowed

outcome(reasons) := denied(reasons) if count(reasons) > 0

matrix_holds(era, caller) if {
	every tool, reasons in matrix[caller] {
		decision(in_era(era, good_call(caller, tool))) == outcome(reasons)
	}
}

test_matrix_table_is_complete if {
	every _, row in matrix {
		count(row) == count(good_arguments)
	}
}

test_legacy_matrix_table if {
	every caller in [trusted, semi_trusted, untrusted] {
		matrix_holds("legacy", caller)
	}
}

test_modern_trusted_matrix if {
	matrix_holds("modern", trusted)
}

test_modern_semi_trusted_matrix if {
	matrix_holds("modern", semi_trusted)
}

test_modern_untrusted_matrix if {
	matrix_holds("modern", untrusted)
}

# A modern retry carries the answers and the server's opaque state: neither is read,
# the call is decided again as it is.
test_modern_retry_decides_as_the_call if {
	retry := {"mcp": {"input_responses": {"k-1": {"action": "accept", "content": {"name": "x"}}}, "request_state": "opaque-1"}}
	every caller, row in matrix {
		every tool, reasons in row {
			decision(object.union(modern(good_call(caller, tool)), retry)) == outcome(reasons)
		}
	}
}

test_modern_identity_rules_as_legacy if {
	decision(modern(good_call(stranger, "read_file"))) == denied([sprintf("trust_boundaries.identity: %s has no trust level", [stranger])])
	decision(modern(anonymous_tool_call("read_file", good_arguments.read_file))) == denied(["trust_boundaries.identity: the caller has no SPIFFE identity"])
	decision(modern(tool_call(trusted, "read_file", {"path": "/etc/passwd"}))) == denied([`tool_access.path: "/etc/passwd" is not under an allowed root`])
}

test_modern_list_items_follow_the_matrix if {
	decision(modern(list_item(trusted, "fetch_url"))) == allowed
	decision(modern(list_item(semi_trusted, "fetch_url"))) == denied(["tool_access.category: semi-trusted may not use network tools"])
}

# --- the documented examples (policy input contract v2) --------------------------

test_documented_tools_call_allowed if {
	doc := {
		"version": 2,
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
			"session_id": "s-1", "protocol_version": "2025-11-25", "era": "legacy",
			"client_capabilities": null, "input_responses": null, "request_state": null,
			"notifications": null, "input_request": null,
		},
		"http": {"method": "POST", "path": "/mcp"},
	}
	decision(doc) == allowed
}

test_documented_modern_tools_call_allowed if {
	doc := {
		"version": 2, "kind": "request", "phase": "call",
		"identity": {
			"spiffe_id": "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent",
			"trust_domain": "mcp-identity.local",
			"path": "/ns/mcp-agents/sa/trusted-agent", "source": "mtls",
		},
		"token": null,
		"mcp": {
			"method": "tools/call", "id": 7, "tool": "read_file", "prompt": null, "resource": null,
			"arguments": {"path": "/workspace/README.md"}, "is_error": false, "batch": false,
			"session_id": null, "protocol_version": "2026-07-28", "era": "modern",
			"client_capabilities": {"elicitation": {"form": {}}}, "input_responses": null,
			"request_state": null, "notifications": null, "input_request": null,
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

test_plumbing_lists_match_the_catalog if {
	spelled := array.concat(array.concat(plumbing_requests, modern_plumbing_requests), plumbing_notifications)
	sort(spelled) == sort(data.mcp_pep.plumbing_methods)
}

test_modern_plumbing_allowed_for_every_known_level if {
	every caller in [trusted, semi_trusted, untrusted] {
		every method in array.concat(plumbing_requests, modern_plumbing_requests) {
			decision(modern(request(identity(caller), method))) == allowed
		}
	}
}

# The listen request itself is plumbing; what it subscribes to is decided URI by URI.
test_subscriptions_listen_allowed_whatever_it_names if {
	listen := object.union(modern(request(identity(untrusted), "subscriptions/listen")), {"mcp": {"notifications": {"resourceSubscriptions": ["db://orders"], "toolsListChanged": true}}})
	decision(listen) == allowed
}

test_modern_plumbing_denied_to_unknown_identity if {
	every method in modern_plumbing_requests {
		decision(modern(request(identity(stranger), method))) == denied([sprintf("trust_boundaries.identity: %s has no trust level", [stranger])])
	}
}

test_modern_plumbing_denied_to_no_identity if {
	every method in modern_plumbing_requests {
		decision(modern(request(null, method))) == denied(["trust_boundaries.identity: the caller has no SPIFFE identity"])
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

# --- subscribed resources (phase "subscribe") -------------------------------------

# The shipped resources catalog is empty: every subscription is refused, as a read is.
test_subscribed_resource_denied_as_a_read if {
	every caller in [trusted, semi_trusted, untrusted] {
		decision(subscribed(caller, "file:///workspace/notes.md")) == decision(modern(resource_read(caller, "file:///workspace/notes.md")))
		decision(subscribed(caller, "file:///workspace/notes.md")) == denied([`trust_boundaries.catalog: resources/read "file:///workspace/notes.md" is not in the catalog`])
	}
	decision(subscribed(stranger, "db://orders")) == denied([
		`trust_boundaries.catalog: resources/read "db://orders" is not in the catalog`,
		sprintf("trust_boundaries.identity: %s has no trust level", [stranger]),
	])
}

# A resource entry with an argument rule: a read without arguments breaks it, a
# subscription (no arguments, like a list item) skips it; the matrices still apply.
test_subscribed_resource_skips_argument_rules if {
	resources := {
		"file:///workspace/notes.md": {"category": "filesystem", "operation": "read", "path_argument": "path"},
		"db://orders": {"category": "database", "operation": "read"},
	}
	decision(subscribed(untrusted, "file:///workspace/notes.md")) == allowed with data.mcp_pep.resources as resources
	denied_by(decision(modern(resource_read(untrusted, "file:///workspace/notes.md"))), "tool_access.path: ") with data.mcp_pep.resources as resources
	decision(subscribed(semi_trusted, "db://orders")) == allowed with data.mcp_pep.resources as resources
	d := decision(subscribed(untrusted, "db://orders")) with data.mcp_pep.resources as resources
	d == denied(["tool_access.category: untrusted may not use database tools"])
}

# --- input requests (kind "input_request") -------------------------------------------

ask_read_file(caller, method) := asking(good_call(caller, "read_file"), method, asks[method])

test_input_requests_to_trusted if {
	every method, _ in asks {
		decision(ask_read_file(trusted, method)) == allowed
	}
}

test_input_requests_to_semi_trusted if {
	decision(ask_read_file(semi_trusted, "elicitation/create")) == allowed
	decision(ask_read_file(semi_trusted, "roots/list")) == allowed
	d := decision(ask_read_file(semi_trusted, "sampling/createMessage"))
	d == denied(["trust_boundaries.input: semi-trusted may not be asked for sampling/createMessage"])
}

test_input_requests_to_untrusted if {
	decision(ask_read_file(untrusted, "elicitation/create")) == allowed
	decision(ask_read_file(untrusted, "sampling/createMessage")) == denied(["trust_boundaries.input: untrusted may not be asked for sampling/createMessage"])
	decision(ask_read_file(untrusted, "roots/list")) == denied(["trust_boundaries.input: untrusted may not be asked for roots/list"])
}

test_input_requests_to_unknown_or_no_identity if {
	every method, params in asks {
		decision(asking(good_call(stranger, "read_file"), method, params)) == denied([sprintf("trust_boundaries.identity: %s has no trust level", [stranger])])
		decision(asking(anonymous_tool_call("read_file", good_arguments.read_file), method, params)) == denied(["trust_boundaries.identity: the caller has no SPIFFE identity"])
	}
}

test_url_elicitation_to_allowed_host if {
	every url in ["https://api.example.com/auth", "HTTPS://API.EXAMPLE.COM/x", "https://api.example.com:443/a?b=c"] {
		every caller in [trusted, semi_trusted, untrusted] {
			decision(asking(good_call(caller, "read_file"), "elicitation/create", url_elicitation(url))) == allowed
		}
	}
}

test_url_elicitation_to_other_host_denied if {
	every url in [
		"https://evil.example/x", "http://api.example.com/auth", "https://api.example.com@evil.com/",
		"https://api.example.com:8443/", "javascript:alert(1)", "",
	] {
		d := decision(asking(good_call(untrusted, "read_file"), "elicitation/create", url_elicitation(url)))
		d == denied([sprintf("tool_access.host: %q is not an allowed https host", [url])])
	}
}

test_url_elicitation_without_usable_url_denied if {
	no_url := object.remove(url_elicitation("x"), ["url"])
	decision(asking(good_call(trusted, "read_file"), "elicitation/create", no_url)) == denied([`tool_access.host: "" is not an allowed https host`])
	every url in [null, 7, ["https://api.example.com/"]] {
		denied_by(decision(asking(good_call(trusted, "read_file"), "elicitation/create", url_elicitation(url))), "tool_access.host: ")
	}
}

# Only a URL elicitation sends the user somewhere: a form's stray url is not looked at.
test_form_elicitation_allowed if {
	decision(asking(good_call(untrusted, "read_file"), "elicitation/create", form_elicitation)) == allowed
	modeless := object.remove(form_elicitation, ["mode"])
	decision(asking(good_call(untrusted, "read_file"), "elicitation/create", modeless)) == allowed
	stray := object.union(form_elicitation, {"url": "https://evil.example/x"})
	decision(asking(good_call(untrusted, "read_file"), "elicitation/create", stray)) == allowed
}

# The call that asks must be one the caller may make; its level's input rule adds up.
test_input_request_on_a_call_the_caller_may_not_make_denied if {
	d1 := decision(asking(good_call(untrusted, "execute_command"), "elicitation/create", form_elicitation))
	d1 == denied([
		"tool_access.category: untrusted may not use shell tools",
		"trust_boundaries.operation: untrusted may not execute",
	])
	d2 := decision(asking(good_call(semi_trusted, "fetch_url"), "sampling/createMessage", asks["sampling/createMessage"]))
	d2 == denied([
		"tool_access.category: semi-trusted may not use network tools",
		"trust_boundaries.input: semi-trusted may not be asked for sampling/createMessage",
	])
	d3 := decision(asking(tool_call(trusted, "delete_everything", {}), "roots/list", {}))
	d3 == denied([`trust_boundaries.catalog: tools/call "delete_everything" is not in the catalog`])
}

# The call's arguments were checked when it was made; they are not checked again.
test_input_request_skips_argument_rules if {
	decision(asking(tool_call(trusted, "read_file", {"path": "/etc/passwd"}), "roots/list", {})) == allowed
	decision(asking(tool_call(trusted, "fetch_url", {"url": "https://evil.com/"}), "elicitation/create", form_elicitation)) == allowed
}

test_unknown_input_method_denied if {
	every method in ["tools/call", "ping", "elicitation/Create", "", "x\"y"] {
		d := decision(asking(good_call(trusted, "read_file"), method, {}))
		d == denied([sprintf("trust_boundaries.input: input method %q is not governed by policy", [method])])
	}
	denied_by(decision(asking(good_call(trusted, "read_file"), null, {})), "trust_boundaries.input: ")
	no_request := object.union(modern(good_call(trusted, "read_file")), {"kind": "input_request"})
	denied_by(decision(no_request), "trust_boundaries.input: ")
}

# Params that are not an object ask nothing of the URL rule.
test_input_request_with_odd_params if {
	every params in [null, "https://evil.example/", [], 1] {
		decision(asking(good_call(trusted, "read_file"), "elicitation/create", params)) == allowed
		decision(asking(good_call(untrusted, "read_file"), "sampling/createMessage", params)) == denied(["trust_boundaries.input: untrusted may not be asked for sampling/createMessage"])
	}
}

test_input_requests_of_prompts_and_resources if {
	prompts := {"summarise": {"category": "filesystem", "operation": "read"}}
	d1 := decision(asking(prompt_get(semi_trusted, "summarise"), "roots/list", {})) with data.mcp_pep.prompts as prompts
	d1 == allowed
	d2 := decision(asking(prompt_get(untrusted, "summarise"), "roots/list", {})) with data.mcp_pep.prompts as prompts
	d2 == denied(["trust_boundaries.input: untrusted may not be asked for roots/list"])
	d3 := decision(asking(resource_read(trusted, "file:///workspace/notes.md"), "elicitation/create", form_elicitation))
	d3 == denied([`trust_boundaries.catalog: resources/read "file:///workspace/notes.md" is not in the catalog`])
}

# Input requests come back only from actions; one claiming plumbing is not plumbing.
test_input_request_on_plumbing_denied if {
	every method in ["ping", "tools/list", "server/discover"] {
		d := decision(asking(request(identity(trusted), method), "elicitation/create", form_elicitation))
		d == denied([sprintf("trust_boundaries.method: method %q is not governed by policy", [method])])
	}
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
		["trust_boundaries.input: ", ask_read_file(untrusted, "roots/list")],
		["trust_boundaries.input: ", asking(good_call(trusted, "read_file"), "tools/call", {})],
		["tool_access.host: ", asking(good_call(trusted, "read_file"), "elicitation/create", url_elicitation("https://evil.example/x"))],
		["trust_boundaries.catalog: ", subscribed(trusted, "file:///workspace/notes.md")],
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
		modern(request(identity(untrusted), "server/discover")),
		ask_read_file(semi_trusted, "roots/list"),
	] {
		decision(msg) == {"allow": true, "reasons": []}
	}
}

# When neither layer says why, the decision still carries a reason.
test_denial_without_layer_reasons_gets_the_fallback if {
	d := decision(good_call(untrusted, "write_file")) with data.mcp.trust_boundaries.deny as set()
	d == denied(["mcp.decision: denied (no layer allowed the message)"])
}
