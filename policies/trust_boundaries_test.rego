# Unit tests of layer 1, trust boundaries (trust_boundaries.rego), run by both
# `mcp-pep policy test` (regorus) and tests/opa/opa_test.py (real OPA).
#
# Each test checks the layer's whole verdict: `allow` and the exact `deny` set. The
# operations matrix is covered cell by cell through catalog tools (read_file: read,
# write_file: write, execute_command: execute); the catalog has no admin or list
# tool, so those columns use test-only tools (extended_tools below).
#
#   level         read  write  execute  admin  list
#   trusted       yes   yes    yes      yes    no
#   semi-trusted  yes   no     no       no     yes
#   untrusted     yes   no     no       no     no
#
# (trusted lacks "list": the MCPIdentity PoC's matrix, reproduced as it is.) A modern
# (2026-07-28) message gets the same verdict as its legacy counterpart. Input requests
# (kind "input_request") follow the input matrix, on top of the asking call's operation:
#
#   level         elicitation/create  sampling/createMessage  roots/list
#   trusted       yes                 yes                     yes
#   semi-trusted  yes                 no                      yes
#   untrusted     yes                 no                      no
package mcp.trust_boundaries_test

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

request(spiffe_id, method) := message("request", "call", identity(spiffe_id), {"method": method, "id": 7})

notification(spiffe_id, method) := message("notification", "call", identity(spiffe_id), {"method": method})

prompt_get(spiffe_id, name) := message("request", "call", identity(spiffe_id), {"method": "prompts/get", "id": 7, "prompt": name})

resource_read(spiffe_id, uri) := message("request", "call", identity(spiffe_id), {"method": "resources/read", "id": 7, "resource": uri})

# An item of a tools/list result, as mcp-pep's list filter builds it (src/policy/filter.rs).
list_item(spiffe_id, tool) := message("request", "list", identity(spiffe_id), {"method": "tools/call", "id": 3, "tool": tool})

anonymous_request(method) := message("request", "call", null, {"method": method, "id": 7})

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

# Typical params of each input method.
asks := {
	"elicitation/create": {"mode": "form", "message": "Your name?", "requestedSchema": {"type": "object"}},
	"sampling/createMessage": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 100},
	"roots/list": {},
}

# The read_file call of a caller asking for method.
ask_read_file(spiffe_id, method) := asking(tool_call(spiffe_id, "read_file", good_path), method, asks[method])

# The plumbing methods of catalog.json, spelled out: a change to the list must show here.
plumbing_requests := ["initialize", "ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list"]

# Requests of the modern era only.
modern_plumbing_requests := ["server/discover", "subscriptions/listen"]

plumbing_notifications := [
	"notifications/initialized", "notifications/cancelled",
	"notifications/progress", "notifications/roots/list_changed",
]

# catalog.json's tools plus one tool for each operation the catalog does not use.
extended_tools := {
	"read_file": {"category": "filesystem", "operation": "read", "path_argument": "path"},
	"write_file": {"category": "filesystem", "operation": "write", "path_argument": "path"},
	"query_database": {"category": "database", "operation": "read"},
	"call_api": {"category": "api", "operation": "read"},
	"execute_command": {"category": "shell", "operation": "execute"},
	"fetch_url": {"category": "network", "operation": "read", "url_argument": "url"},
	"manage_users": {"category": "filesystem", "operation": "admin"},
	"list_files": {"category": "filesystem", "operation": "list"},
}

# The layer's verdict for one input.
verdict(msg) := {"allow": allow, "deny": deny} if {
	allow := data.mcp.trust_boundaries.allow with input as msg
	deny := data.mcp.trust_boundaries.deny with input as msg
}

allowed := {"allow": true, "deny": set()}

denied(reason) := {"allow": false, "deny": {reason}}

good_path := {"path": "/workspace/README.md"}

level_name := {trusted: "trusted", semi_trusted: "semi-trusted", untrusted: "untrusted"}

# The operations matrix as a table, and a tool of extended_tools for each operation.
operations := {
	trusted: {"read", "write", "execute", "admin"},
	semi_trusted: {"read", "list"},
	untrusted: {"read"},
}

operation_tools := {"read": "read_file", "write": "write_file", "execute": "execute_command", "admin": "manage_users", "list": "list_files"}

expected_operation(caller, op) := allowed if op in operations[caller]

else := denied(sprintf("trust_boundaries.operation: %s may not %s", [level_name[caller], op]))

operations_hold(era, caller) if {
	every op, tool in operation_tools {
		verdict(in_era(era, tool_call(caller, tool, good_path))) == expected_operation(caller, op)
	}
}

# --- the operations matrix: trusted ----------------------------------------------

test_trusted_may_read if {
	verdict(tool_call(trusted, "read_file", good_path)) == allowed
}

test_trusted_may_write if {
	verdict(tool_call(trusted, "write_file", good_path)) == allowed
}

test_trusted_may_execute if {
	verdict(tool_call(trusted, "execute_command", {"command": "ls"})) == allowed
}

test_trusted_may_admin if {
	verdict(tool_call(trusted, "manage_users", {})) == allowed with data.mcp_pep.tools as extended_tools
}

test_trusted_may_not_list if {
	v := verdict(tool_call(trusted, "list_files", {})) with data.mcp_pep.tools as extended_tools
	v == denied("trust_boundaries.operation: trusted may not list")
}

# --- the operations matrix: semi-trusted -----------------------------------------

test_semi_trusted_may_read if {
	verdict(tool_call(semi_trusted, "read_file", good_path)) == allowed
}

test_semi_trusted_may_not_write if {
	verdict(tool_call(semi_trusted, "write_file", good_path)) == denied("trust_boundaries.operation: semi-trusted may not write")
}

test_semi_trusted_may_not_execute if {
	v := verdict(tool_call(semi_trusted, "execute_command", {"command": "ls"}))
	v == denied("trust_boundaries.operation: semi-trusted may not execute")
}

test_semi_trusted_may_not_admin if {
	v := verdict(tool_call(semi_trusted, "manage_users", {})) with data.mcp_pep.tools as extended_tools
	v == denied("trust_boundaries.operation: semi-trusted may not admin")
}

test_semi_trusted_may_list if {
	verdict(tool_call(semi_trusted, "list_files", {})) == allowed with data.mcp_pep.tools as extended_tools
}

# --- the operations matrix: untrusted --------------------------------------------

test_untrusted_may_read if {
	verdict(tool_call(untrusted, "read_file", good_path)) == allowed
}

test_untrusted_may_not_write if {
	verdict(tool_call(untrusted, "write_file", good_path)) == denied("trust_boundaries.operation: untrusted may not write")
}

test_untrusted_may_not_execute if {
	v := verdict(tool_call(untrusted, "execute_command", {"command": "ls"}))
	v == denied("trust_boundaries.operation: untrusted may not execute")
}

test_untrusted_may_not_admin if {
	v := verdict(tool_call(untrusted, "manage_users", {})) with data.mcp_pep.tools as extended_tools
	v == denied("trust_boundaries.operation: untrusted may not admin")
}

test_untrusted_may_not_list if {
	v := verdict(tool_call(untrusted, "list_files", {})) with data.mcp_pep.tools as extended_tools
	v == denied("trust_boundaries.operation: untrusted may not list")
}

# Every read tool of the catalog is a read for this layer, whatever its category
# (the categories are tool access's business).
test_every_read_tool_is_a_read_for_untrusted if {
	every tool in ["read_file", "query_database", "call_api", "fetch_url"] {
		verdict(tool_call(untrusted, tool, {})) == allowed
	}
}

# --- the operations matrix in both eras ---------------------------------------------

test_legacy_operations_table if {
	every caller in [trusted, semi_trusted, untrusted] {
		operations_hold("legacy", caller)
	} with data.mcp_pep.tools as extended_tools
}

test_modern_trusted_operations if {
	operations_hold("modern", trusted) with data.mcp_pep.tools as extended_tools
}

test_modern_semi_trusted_operations if {
	operations_hold("modern", semi_trusted) with data.mcp_pep.tools as extended_tools
}

test_modern_untrusted_operations if {
	operations_hold("modern", untrusted) with data.mcp_pep.tools as extended_tools
}

test_modern_identity_rules_as_legacy if {
	verdict(modern(tool_call(stranger, "read_file", good_path))) == denied(sprintf("trust_boundaries.identity: %s has no trust level", [stranger]))
	modern_anonymous := modern(message("request", "call", null, {"method": "tools/call", "id": 7, "tool": "read_file", "arguments": good_path}))
	verdict(modern_anonymous) == denied("trust_boundaries.identity: the caller has no SPIFFE identity")
}

# --- plumbing: open to every known level, closed to unknown or absent identities --

test_plumbing_open_to_trusted if {
	every method in plumbing_requests {
		verdict(request(trusted, method)) == allowed
	}
	every method in plumbing_notifications {
		verdict(notification(trusted, method)) == allowed
	}
}

test_plumbing_open_to_semi_trusted if {
	every method in plumbing_requests {
		verdict(request(semi_trusted, method)) == allowed
	}
	every method in plumbing_notifications {
		verdict(notification(semi_trusted, method)) == allowed
	}
}

test_plumbing_open_to_untrusted if {
	every method in plumbing_requests {
		verdict(request(untrusted, method)) == allowed
	}
	every method in plumbing_notifications {
		verdict(notification(untrusted, method)) == allowed
	}
}

test_plumbing_closed_to_unknown_identity if {
	every method in plumbing_requests {
		verdict(request(stranger, method)) == denied(sprintf("trust_boundaries.identity: %s has no trust level", [stranger]))
	}
	every method in plumbing_notifications {
		verdict(notification(stranger, method)) == denied(sprintf("trust_boundaries.identity: %s has no trust level", [stranger]))
	}
}

test_plumbing_closed_to_no_identity if {
	every method in array.concat(plumbing_requests, plumbing_notifications) {
		verdict(anonymous_request(method)) == denied("trust_boundaries.identity: the caller has no SPIFFE identity")
	}
}

test_plumbing_lists_match_the_catalog if {
	spelled := array.concat(array.concat(plumbing_requests, modern_plumbing_requests), plumbing_notifications)
	sort(spelled) == sort(data.mcp_pep.plumbing_methods)
}

test_modern_plumbing_open_to_known_levels if {
	every caller in [trusted, semi_trusted, untrusted] {
		every method in modern_plumbing_requests {
			verdict(modern(request(caller, method))) == allowed
		}
	}
}

test_modern_plumbing_closed_to_unknown_and_no_identity if {
	every method in modern_plumbing_requests {
		verdict(modern(request(stranger, method))) == denied(sprintf("trust_boundaries.identity: %s has no trust level", [stranger]))
		verdict(modern(anonymous_request(method))) == denied("trust_boundaries.identity: the caller has no SPIFFE identity")
	}
}

# Responses, stream opening and session end carry no method: plumbing by their kind.
test_methodless_kinds_open_to_known_levels if {
	every kind in ["response", "stream", "session_end"] {
		every caller in [trusted, semi_trusted, untrusted] {
			verdict(message(kind, "call", identity(caller), {})) == allowed
		}
	}
}

test_methodless_kinds_closed_to_unknown_and_no_identity if {
	every kind in ["response", "stream", "session_end"] {
		verdict(message(kind, "call", null, {})) == denied("trust_boundaries.identity: the caller has no SPIFFE identity")
		verdict(message(kind, "call", identity(stranger), {})) == denied(sprintf("trust_boundaries.identity: %s has no trust level", [stranger]))
	}
}

# --- identities and levels -------------------------------------------------------

test_unknown_identity_denied_a_tool if {
	v := verdict(tool_call(stranger, "read_file", good_path))
	v == denied("trust_boundaries.identity: spiffe://mcp-identity.local/ns/mcp-agents/sa/stranger-agent has no trust level")
}

test_no_identity_denied_a_tool if {
	msg := message("request", "call", null, {"method": "tools/call", "id": 7, "tool": "read_file", "arguments": good_path})
	verdict(msg) == denied("trust_boundaries.identity: the caller has no SPIFFE identity")
}

# An identity mapped to a level the data does not define is refused everything.
test_undefined_level_denied if {
	ids := {trusted: "auditor"}
	verdict(request(trusted, "ping")) == denied(`trust_boundaries.level: trust level "auditor" is not defined`) with data.mcp_pep.identities as ids
	v := verdict(tool_call(trusted, "read_file", good_path)) with data.mcp_pep.identities as ids
	v == denied(`trust_boundaries.level: trust level "auditor" is not defined`)
}

# --- methods and the catalog -----------------------------------------------------

test_unknown_method_denied if {
	every method in ["completion/complete", "logging/setLevel", "resources/subscribe", "tools/call/x", "TOOLS/LIST", ""] {
		verdict(request(trusted, method)) == denied(sprintf("trust_boundaries.method: method %q is not governed by policy", [method]))
	}
}

test_unknown_notification_denied if {
	v := verdict(notification(trusted, "notifications/message"))
	v == denied(`trust_boundaries.method: method "notifications/message" is not governed by policy`)
}

test_unknown_tool_denied if {
	v := verdict(tool_call(trusted, "delete_everything", {}))
	v == denied(`trust_boundaries.catalog: tools/call "delete_everything" is not in the catalog`)
}

# A request without a method (possible only for a malformed kind) is refused by the
# method rule. The exact quoting of a null is the policy's choice; the rule is not.
test_request_without_method_denied if {
	v := verdict(message("request", "call", identity(trusted), {"id": 7}))
	v.allow == false
	count(v.deny) == 1
	some reason in v.deny
	startswith(reason, "trust_boundaries.method: ")
}

test_tool_call_without_tool_denied if {
	v := verdict(message("request", "call", identity(trusted), {"method": "tools/call", "id": 7}))
	v.allow == false
	count(v.deny) == 1
	some reason in v.deny
	startswith(reason, "trust_boundaries.catalog: tools/call ")
}

test_prompt_without_catalog_entry_denied if {
	v := verdict(message("request", "call", identity(trusted), {"method": "prompts/get", "id": 7, "prompt": "summarise"}))
	v == denied(`trust_boundaries.catalog: prompts/get "summarise" is not in the catalog`)
}

test_prompt_with_catalog_entry_follows_the_matrix if {
	prompts := {"summarise": {"category": "filesystem", "operation": "read"}, "rewrite": {"category": "filesystem", "operation": "write"}}
	verdict(prompt_get(untrusted, "summarise")) == allowed with data.mcp_pep.prompts as prompts
	verdict(prompt_get(trusted, "rewrite")) == allowed with data.mcp_pep.prompts as prompts
	v := verdict(prompt_get(semi_trusted, "rewrite")) with data.mcp_pep.prompts as prompts
	v == denied("trust_boundaries.operation: semi-trusted may not write")
}

test_resource_without_catalog_entry_denied if {
	msg := message("request", "call", identity(trusted), {"method": "resources/read", "id": 7, "resource": "file:///workspace/notes.md"})
	verdict(msg) == denied(`trust_boundaries.catalog: resources/read "file:///workspace/notes.md" is not in the catalog`)
}

test_resource_with_catalog_entry_follows_the_matrix if {
	resources := {"file:///workspace/notes.md": {"category": "filesystem", "operation": "read"}, "db://admin": {"category": "database", "operation": "admin"}}
	verdict(resource_read(untrusted, "file:///workspace/notes.md")) == allowed with data.mcp_pep.resources as resources
	verdict(resource_read(trusted, "db://admin")) == allowed with data.mcp_pep.resources as resources
	v := verdict(resource_read(untrusted, "db://admin")) with data.mcp_pep.resources as resources
	v == denied("trust_boundaries.operation: untrusted may not admin")
}

# A tool's name in prompt or resource position is not a tool call.
test_catalog_sections_are_separate if {
	msg := message("request", "call", identity(trusted), {"method": "prompts/get", "id": 7, "prompt": "read_file"})
	verdict(msg) == denied(`trust_boundaries.catalog: prompts/get "read_file" is not in the catalog`)
}

# --- list items (phase "list"): the operations matrix applies the same way -------

test_list_phase_follows_the_matrix if {
	verdict(list_item(trusted, "execute_command")) == allowed
	verdict(list_item(untrusted, "read_file")) == allowed
	verdict(list_item(semi_trusted, "write_file")) == denied("trust_boundaries.operation: semi-trusted may not write")
	verdict(list_item(untrusted, "execute_command")) == denied("trust_boundaries.operation: untrusted may not execute")
	verdict(list_item(stranger, "read_file")) == denied(sprintf("trust_boundaries.identity: %s has no trust level", [stranger]))
}

# --- subscribed resources (phase "subscribe"): decided as reads ------------------

test_subscribed_resource_not_in_catalog_denied if {
	every caller in [trusted, semi_trusted, untrusted] {
		verdict(subscribed(caller, "db://orders")) == denied(`trust_boundaries.catalog: resources/read "db://orders" is not in the catalog`)
	}
}

test_subscribed_resource_follows_the_matrix if {
	resources := {"file:///workspace/notes.md": {"category": "filesystem", "operation": "read"}, "db://admin": {"category": "database", "operation": "admin"}}
	verdict(subscribed(untrusted, "file:///workspace/notes.md")) == allowed with data.mcp_pep.resources as resources
	verdict(subscribed(trusted, "db://admin")) == allowed with data.mcp_pep.resources as resources
	v := verdict(subscribed(semi_trusted, "db://admin")) with data.mcp_pep.resources as resources
	v == denied("trust_boundaries.operation: semi-trusted may not admin")
}

# --- input requests (kind "input_request") -----------------------------------------

test_trusted_may_be_asked_everything if {
	every method, _ in asks {
		verdict(ask_read_file(trusted, method)) == allowed
	}
}

test_semi_trusted_may_be_asked_elicitation_and_roots if {
	verdict(ask_read_file(semi_trusted, "elicitation/create")) == allowed
	verdict(ask_read_file(semi_trusted, "roots/list")) == allowed
	v := verdict(ask_read_file(semi_trusted, "sampling/createMessage"))
	v == denied("trust_boundaries.input: semi-trusted may not be asked for sampling/createMessage")
}

test_untrusted_may_be_asked_elicitation_only if {
	verdict(ask_read_file(untrusted, "elicitation/create")) == allowed
	verdict(ask_read_file(untrusted, "sampling/createMessage")) == denied("trust_boundaries.input: untrusted may not be asked for sampling/createMessage")
	verdict(ask_read_file(untrusted, "roots/list")) == denied("trust_boundaries.input: untrusted may not be asked for roots/list")
}

test_input_request_needs_the_calls_operation if {
	v1 := verdict(asking(tool_call(untrusted, "write_file", good_path), "elicitation/create", asks["elicitation/create"]))
	v1 == denied("trust_boundaries.operation: untrusted may not write")
	v2 := verdict(asking(tool_call(semi_trusted, "execute_command", {}), "sampling/createMessage", {}))
	v2 == {"allow": false, "deny": {
		"trust_boundaries.input: semi-trusted may not be asked for sampling/createMessage",
		"trust_boundaries.operation: semi-trusted may not execute",
	}}
}

test_input_request_from_unknown_or_no_identity_denied if {
	every method, params in asks {
		verdict(ask_read_file(stranger, method)) == denied(sprintf("trust_boundaries.identity: %s has no trust level", [stranger]))
		anonymous := message("request", "call", null, {"method": "tools/call", "id": 7, "tool": "read_file", "arguments": good_path})
		verdict(asking(anonymous, method, params)) == denied("trust_boundaries.identity: the caller has no SPIFFE identity")
	}
}

# A level the data does not define: the level rule says it; no input rule guesses.
test_input_request_to_undefined_level_denied if {
	ids := {untrusted: "auditor"}
	v := verdict(ask_read_file(untrusted, "roots/list")) with data.mcp_pep.identities as ids
	v == denied(`trust_boundaries.level: trust level "auditor" is not defined`)
}

test_unknown_input_method_denied if {
	every method in ["tools/call", "notifications/message", "Roots/List", "roots/list ", "", "sampling/createmessage"] {
		v := verdict(asking(tool_call(trusted, "read_file", good_path), method, {}))
		v == denied(sprintf("trust_boundaries.input: input method %q is not governed by policy", [method]))
	}
}

# The quoting of a non-string is the policy's choice; the rule is not.
test_missing_input_method_denied if {
	every ask in [{"key": "k-1", "params": {}}, {"key": "k-1", "method": null, "params": {}}, {"key": "k-1", "method": 3, "params": {}}, null] {
		msg := object.union(modern(tool_call(trusted, "read_file", good_path)), {"kind": "input_request", "mcp": {"input_request": ask}})
		v := verdict(msg)
		v.allow == false
		count(v.deny) == 1
		some reason in v.deny
		startswith(reason, "trust_boundaries.input: input method ")
	}
}

# A level's input_requests lists what it may be asked; one without the key may be asked nothing.
test_input_methods_come_from_the_data if {
	levels := {"trusted": {"operations": ["read"], "categories": ["filesystem"]}, "semi-trusted": {"operations": ["read"], "categories": ["filesystem"], "input_requests": ["roots/list"]}}
	v1 := verdict(ask_read_file(trusted, "roots/list")) with data.mcp_pep.levels as levels
	v1 == denied("trust_boundaries.input: trusted may not be asked for roots/list")
	v2 := verdict(ask_read_file(trusted, "elicitation/create")) with data.mcp_pep.levels as levels
	v2 == denied(`trust_boundaries.input: input method "elicitation/create" is not governed by policy`)
}

test_input_request_on_plumbing_denied if {
	every method in ["ping", "initialize", "subscriptions/listen"] {
		v := verdict(asking(request(trusted, method), "roots/list", {}))
		v == denied(sprintf("trust_boundaries.method: method %q is not governed by policy", [method]))
	}
}
