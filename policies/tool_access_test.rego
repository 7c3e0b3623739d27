# Unit tests of layer 2, tool access (tool_access.rego), run by both
# `mcp-pep policy test` (regorus) and tests/opa/opa_test.py (real OPA).
#
# Each test checks the layer's whole verdict: `allow` and the exact `deny` set.
# The categories matrix is covered cell by cell through the catalog's tools:
#
#   category    tool             trusted  semi-trusted  untrusted
#   filesystem  read_file        yes      yes           yes
#   database    query_database   yes      yes           no
#   api         call_api         yes      yes           no
#   shell       execute_command  yes      no            no
#   network     fetch_url        yes      no            no
#
# then the argument rules, which apply to calls (phase "call") and not to list items
# or subscribed resources (phases "list", "subscribe"), nor to input requests, whose
# URL elicitations get the network URL rule instead. A modern (2026-07-28) message
# gets the same verdict as its legacy counterpart.
package mcp.tool_access_test

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

message(phase, who, mcp) := {
	"version": 2,
	"kind": "request",
	"phase": phase,
	"identity": who,
	"token": null,
	"mcp": object.union(blank_mcp, mcp),
	"http": {"method": "POST", "path": "/mcp"},
}

# arguments: an object, or null for a call that sent none.
tool_call(spiffe_id, tool, arguments) := message("call", identity(spiffe_id), {"method": "tools/call", "id": 7, "tool": tool, "arguments": arguments})

# An item of a tools/list result, as mcp-pep's list filter builds it (src/policy/filter.rs).
list_item(spiffe_id, tool) := message("list", identity(spiffe_id), {"method": "tools/call", "id": 3, "tool": tool})

ping(who) := message("call", who, {"method": "ping", "id": 1})

read_file(path) := tool_call(trusted, "read_file", {"path": path})

fetch_url(url) := tool_call(trusted, "fetch_url", {"url": url})

# The same message in the modern era (object.union merges the mcp objects).
modern(msg) := object.union(msg, {"mcp": modern_mcp})

in_era("legacy", msg) := msg

in_era("modern", msg) := modern(msg)

# A resource a modern subscriptions/listen names, decided as a read of it.
subscribed(spiffe_id, uri) := modern(message("subscribe", identity(spiffe_id), {"method": "resources/read", "id": 5, "resource": uri}))

# An entry of the input_required answer to a modern call: the call's own document,
# kind "input_request", with what the server asks.
asking(call, method, params) := object.union(modern(call), {
	"kind": "input_request",
	"mcp": {"input_request": {"key": "k-1", "method": method, "params": params}},
})

form_elicitation := {"mode": "form", "message": "Your name?", "requestedSchema": {"type": "object"}}

url_elicitation(url) := {"mode": "url", "message": "Sign in", "url": url, "elicitationId": "e-1"}

# A URL elicitation during a trusted caller's read_file.
elicit_url(url) := asking(read_file("/workspace/README.md"), "elicitation/create", url_elicitation(url))

# The layer's verdict for one input.
verdict(msg) := {"allow": allow, "deny": deny} if {
	allow := data.mcp.tool_access.allow with input as msg
	deny := data.mcp.tool_access.deny with input as msg
}

allowed := {"allow": true, "deny": set()}

denied(reason) := {"allow": false, "deny": {reason}}

# Denied with exactly one reason, which starts with prefix: for values whose quoting
# in the reason is the policy's choice (non-strings), the rule must still be named.
denied_by(v, prefix) if {
	v.allow == false
	count(v.deny) == 1
	some reason in v.deny
	startswith(reason, prefix)
}

path_denied(path) := denied(sprintf("tool_access.path: %q is not under an allowed root", [path]))

host_denied(url) := denied(sprintf("tool_access.host: %q is not an allowed https host", [url]))

# Good arguments for each catalog tool.
good_file := {"path": "/workspace/README.md"}

good_query := {"query": "select 1"}

good_command := {"command": "ls"}

good_url := {"url": "https://api.example.com/v1/items"}

# The categories matrix as a table: the tool of each category and who may use it.
category_tools := {"filesystem": "read_file", "database": "query_database", "api": "call_api", "shell": "execute_command", "network": "fetch_url"}

good_arguments := {"read_file": good_file, "query_database": good_query, "call_api": {}, "execute_command": good_command, "fetch_url": good_url}

categories := {
	trusted: {"filesystem", "database", "api", "shell", "network"},
	semi_trusted: {"filesystem", "database", "api"},
	untrusted: {"filesystem"},
}

level_name := {trusted: "trusted", semi_trusted: "semi-trusted", untrusted: "untrusted"}

expected_category(caller, category) := allowed if category in categories[caller]

else := denied(sprintf("tool_access.category: %s may not use %s tools", [level_name[caller], category]))

categories_hold(era, caller) if {
	every category, tool in category_tools {
		verdict(in_era(era, tool_call(caller, tool, good_arguments[tool]))) == expected_category(caller, category)
	}
}

# --- the categories matrix: trusted ----------------------------------------------

test_trusted_may_use_filesystem if {
	verdict(tool_call(trusted, "read_file", good_file)) == allowed
}

test_trusted_may_use_database if {
	verdict(tool_call(trusted, "query_database", good_query)) == allowed
}

test_trusted_may_use_api if {
	verdict(tool_call(trusted, "call_api", {})) == allowed
}

test_trusted_may_use_shell if {
	verdict(tool_call(trusted, "execute_command", good_command)) == allowed
}

test_trusted_may_use_network if {
	verdict(tool_call(trusted, "fetch_url", good_url)) == allowed
}

# --- the categories matrix: semi-trusted -----------------------------------------

test_semi_trusted_may_use_filesystem if {
	verdict(tool_call(semi_trusted, "read_file", good_file)) == allowed
}

test_semi_trusted_may_use_database if {
	verdict(tool_call(semi_trusted, "query_database", good_query)) == allowed
}

test_semi_trusted_may_use_api if {
	verdict(tool_call(semi_trusted, "call_api", {})) == allowed
}

test_semi_trusted_may_not_use_shell if {
	v := verdict(tool_call(semi_trusted, "execute_command", good_command))
	v == denied("tool_access.category: semi-trusted may not use shell tools")
}

test_semi_trusted_may_not_use_network if {
	v := verdict(tool_call(semi_trusted, "fetch_url", good_url))
	v == denied("tool_access.category: semi-trusted may not use network tools")
}

# --- the categories matrix: untrusted --------------------------------------------

test_untrusted_may_use_filesystem if {
	verdict(tool_call(untrusted, "read_file", good_file)) == allowed
}

test_untrusted_may_not_use_database if {
	v := verdict(tool_call(untrusted, "query_database", good_query))
	v == denied("tool_access.category: untrusted may not use database tools")
}

test_untrusted_may_not_use_api if {
	verdict(tool_call(untrusted, "call_api", {})) == denied("tool_access.category: untrusted may not use api tools")
}

test_untrusted_may_not_use_shell if {
	v := verdict(tool_call(untrusted, "execute_command", good_command))
	v == denied("tool_access.category: untrusted may not use shell tools")
}

test_untrusted_may_not_use_network if {
	v := verdict(tool_call(untrusted, "fetch_url", good_url))
	v == denied("tool_access.category: untrusted may not use network tools")
}

# --- the categories matrix in both eras --------------------------------------------

test_legacy_categories_table if {
	every caller in [trusted, semi_trusted, untrusted] {
		categories_hold("legacy", caller)
	}
}

test_modern_trusted_categories if {
	categories_hold("modern", trusted)
}

test_modern_semi_trusted_categories if {
	categories_hold("modern", semi_trusted)
}

test_modern_untrusted_categories if {
	categories_hold("modern", untrusted)
}

test_modern_argument_rules_as_legacy if {
	verdict(modern(read_file("/etc/passwd"))) == path_denied("/etc/passwd")
	verdict(modern(fetch_url("https://evil.com/"))) == host_denied("https://evil.com/")
	verdict(modern(fetch_url("https://api.example.com/v1"))) == allowed
}

# --- levels, identities, plumbing --------------------------------------------------

test_unknown_and_no_identity_get_no_tool if {
	every tool in ["read_file", "query_database", "call_api", "execute_command", "fetch_url"] {
		not data.mcp.tool_access.allow with input as tool_call(stranger, tool, {})
	}
	no_identity := message("call", null, {"method": "tools/call", "id": 7, "tool": "read_file", "arguments": good_file})
	verdict(no_identity) == {"allow": false, "deny": set()}
}

# The category rule names no level that is not defined (trust boundaries does).
test_undefined_level_gets_no_tool if {
	# Bound first: regorus 0.14.1 leaves `f(x) with data.a as {rule_ref: v}` undefined.
	ids := {trusted: "auditor"}
	v := verdict(tool_call(trusted, "query_database", good_query)) with data.mcp_pep.identities as ids
	v == {"allow": false, "deny": set()}
}

test_plumbing_needs_a_known_level if {
	verdict(ping(identity(untrusted))) == allowed
	verdict(ping(identity(stranger))) == {"allow": false, "deny": set()}
	verdict(ping(null)) == {"allow": false, "deny": set()}
}

test_modern_plumbing_needs_a_known_level if {
	every method in ["server/discover", "subscriptions/listen"] {
		every caller in [trusted, semi_trusted, untrusted] {
			verdict(modern(message("call", identity(caller), {"method": method, "id": 1}))) == allowed
		}
		verdict(modern(message("call", identity(stranger), {"method": method, "id": 1}))) == {"allow": false, "deny": set()}
		verdict(modern(message("call", null, {"method": method, "id": 1}))) == {"allow": false, "deny": set()}
	}
}

test_unknown_tool_gets_nothing if {
	verdict(tool_call(trusted, "delete_everything", {})) == {"allow": false, "deny": set()}
}

# --- filesystem paths: absolute, no "..", under /workspace/ ----------------------

test_path_under_workspace_allowed if {
	every path in [
		"/workspace/README.md", "/workspace/a/b/c.txt", "/workspace/",
		"/workspace/.hidden", "/workspace/a..b", "/workspace/...", "/workspace//double",
	] {
		verdict(read_file(path)) == allowed
	}
}

test_path_traversal_denied if {
	every path in [
		"/workspace/../etc/passwd", "/workspace/a/../../etc/shadow",
		"/workspace/..", "/workspace/a/..", "/workspace/../workspace/a",
	] {
		verdict(read_file(path)) == path_denied(path)
	}
}

# What a tool server could decode, normalise or truncate into another path after the
# decision (tests/attacks/policy_input.yaml sends these through the proxy).
test_encoded_or_lookalike_path_denied if {
	every path in [
		"/workspace/..\\..\\etc\\passwd", "/workspace/%2e%2e/etc/passwd", "/workspace/..%2fetc",
		"/workspace/a\u0000b", "/workspace/\u2025/etc/passwd", "/workspace/\uff0e\uff0e\uff0fetc",
		"/workspace/caf\u00e9.txt", "/workspace/a\tb", "\\workspace\\a",
	] {
		denied_by(verdict(read_file(path)), "tool_access.path: ")
		some reason in verdict(read_file(path)).deny
		contains(reason, "printable ASCII")
	}
}

test_relative_path_denied if {
	every path in ["workspace/README.md", "./workspace/README.md", "README.md", "../workspace/a", "~/workspace/a"] {
		verdict(read_file(path)) == path_denied(path)
	}
}

test_path_under_other_root_denied if {
	every path in ["/etc/passwd", "/", "/workspace", "/workspacex/a", "/Workspace/a", "/tmp/workspace/a", " /workspace/a"] {
		verdict(read_file(path)) == path_denied(path)
	}
}

test_missing_path_denied if {
	verdict(tool_call(trusted, "read_file", {})) == path_denied("")
	verdict(tool_call(trusted, "read_file", {"file": "/workspace/a"})) == path_denied("")
}

test_non_string_path_denied if {
	every path in [42, 0, -1, 1.5, true, false, null, ["/workspace/a"], {"path": "/workspace/a"}] {
		denied_by(verdict(read_file(path)), "tool_access.path: ")
	}
}

# A tools/call without arguments has "arguments": null (docs/policy-input.md).
test_call_without_arguments_denied_by_path_rule if {
	denied_by(verdict(tool_call(trusted, "read_file", null)), "tool_access.path: ")
}

test_write_file_path_rules if {
	verdict(tool_call(trusted, "write_file", {"path": "/workspace/out.txt", "content": "x"})) == allowed
	v := verdict(tool_call(trusted, "write_file", {"path": "/workspace/../etc/cron.d/x", "content": "x"}))
	v == path_denied("/workspace/../etc/cron.d/x")
}

test_extra_arguments_do_not_matter if {
	verdict(tool_call(trusted, "read_file", {"path": "/workspace/a", "url": "http://evil.com", "extra": [1]})) == allowed
}

# --- network URLs: https to an allowed host, nothing else ------------------------

test_https_url_to_allowed_host_allowed if {
	every url in [
		"https://api.example.com", "https://api.example.com/", "https://api.example.com/v1/items",
		"https://api.example.com:443", "https://api.example.com:443/v1", "https://api.example.com/search?q=a&b=c",
		"HTTPS://API.EXAMPLE.COM/v1",
	] {
		verdict(fetch_url(url)) == allowed
	}
}

test_plain_http_denied if {
	verdict(fetch_url("http://api.example.com/v1")) == host_denied("http://api.example.com/v1")
}

test_other_host_denied if {
	every url in ["https://evil.com/", "https://example.com/", "https://api.example.org/", "https://x.api.example.com/"] {
		verdict(fetch_url(url)) == host_denied(url)
	}
}

test_lookalike_host_denied if {
	verdict(fetch_url("https://api.example.com.evil.com/")) == host_denied("https://api.example.com.evil.com/")
}

test_userinfo_denied if {
	every url in ["https://api.example.com@evil.com", "https://api.example.com@evil.com/", "https://user@api.example.com/", "https://api.example.com:443@evil.com/"] {
		verdict(fetch_url(url)) == host_denied(url)
	}
}

# An "@" anywhere after the host is refused, even in the path.
test_at_sign_after_host_denied if {
	every url in ["https://api.example.com/@evil.com", "https://api.example.com/a?next=x@y"] {
		verdict(fetch_url(url)) == host_denied(url)
	}
}

test_other_port_or_scheme_denied if {
	every url in ["https://api.example.com:8443/", "ftp://api.example.com/", "wss://api.example.com/", "//api.example.com/", "api.example.com"] {
		verdict(fetch_url(url)) == host_denied(url)
	}
}

# Non-ASCII letters must not fold into an allowed host: U+0130 lower-cases to "i" in
# OPA (Go's simple case mapping) and to "i" + U+0307 in regorus (Rust's full mapping).
# (How a reason shows non-ASCII characters is the policy's choice.)
test_unicode_case_folding_host_denied if {
	every url in ["https://apİ.example.com/", "https://APİ.EXAMPLE.COM/v1"] {
		denied_by(verdict(fetch_url(url)), "tool_access.host: ")
	}
}

test_missing_url_denied if {
	verdict(tool_call(trusted, "fetch_url", {})) == host_denied("")
}

test_non_string_url_denied if {
	every url in [7, true, null, ["https://api.example.com/"]] {
		denied_by(verdict(fetch_url(url)), "tool_access.host: ")
	}
}

test_call_without_arguments_denied_by_host_rule if {
	denied_by(verdict(tool_call(trusted, "fetch_url", null)), "tool_access.host: ")
}

# --- argument rules and the matrix together ----------------------------------------

test_bad_arguments_and_category_both_named if {
	v := verdict(tool_call(semi_trusted, "fetch_url", {"url": "https://evil.com/"}))
	v == {"allow": false, "deny": {
		"tool_access.category: semi-trusted may not use network tools",
		`tool_access.host: "https://evil.com/" is not an allowed https host`,
	}}
}

# --- list items (phase "list"): no argument rules, the matrix still applies -------

test_list_phase_skips_argument_rules if {
	verdict(list_item(trusted, "read_file")) == allowed
	verdict(list_item(trusted, "write_file")) == allowed
	verdict(list_item(trusted, "fetch_url")) == allowed
	verdict(list_item(untrusted, "read_file")) == allowed
}

# Even with arguments present, a list item is not checked against them.
test_list_phase_ignores_present_arguments if {
	item := message("list", identity(trusted), {"method": "tools/call", "id": 3, "tool": "read_file", "arguments": {"path": "/etc/passwd"}})
	verdict(item) == allowed
}

test_list_phase_keeps_the_matrix if {
	verdict(list_item(semi_trusted, "fetch_url")) == denied("tool_access.category: semi-trusted may not use network tools")
	verdict(list_item(untrusted, "query_database")) == denied("tool_access.category: untrusted may not use database tools")
	verdict(list_item(semi_trusted, "execute_command")) == denied("tool_access.category: semi-trusted may not use shell tools")
	verdict(list_item(semi_trusted, "call_api")) == allowed
}

# --- subscribed resources (phase "subscribe"): like list items -------------------

test_subscribe_phase_skips_argument_rules if {
	resources := {"file:///workspace/notes.md": {"category": "filesystem", "operation": "read", "path_argument": "path"}}
	verdict(subscribed(untrusted, "file:///workspace/notes.md")) == allowed with data.mcp_pep.resources as resources
	read := modern(message("call", identity(untrusted), {"method": "resources/read", "id": 7, "resource": "file:///workspace/notes.md"}))
	v := verdict(read) with data.mcp_pep.resources as resources
	v == path_denied("")
}

test_subscribe_phase_keeps_the_matrix if {
	resources := {"db://orders": {"category": "database", "operation": "read"}}
	verdict(subscribed(semi_trusted, "db://orders")) == allowed with data.mcp_pep.resources as resources
	v := verdict(subscribed(untrusted, "db://orders")) with data.mcp_pep.resources as resources
	v == denied("tool_access.category: untrusted may not use database tools")
}

# Nothing in the shipped resources catalog: no category allows a subscription.
test_subscribed_resource_not_in_catalog_gets_nothing if {
	verdict(subscribed(trusted, "file:///workspace/notes.md")) == {"allow": false, "deny": set()}
}

# --- input requests (kind "input_request") -----------------------------------------

# What the server asks is this layer's business only for a URL elicitation.
test_input_requests_other_than_url_elicitation_allowed if {
	every ask in [
		["elicitation/create", form_elicitation],
		["elicitation/create", {"message": "no mode is a form"}],
		["elicitation/create", object.union(form_elicitation, {"url": "https://evil.example/x"})],
		["sampling/createMessage", {"messages": [], "maxTokens": 1}],
		["roots/list", {}],
		["roots/list", {"mode": "url", "url": "https://evil.example/x"}],
	] {
		verdict(asking(read_file("/workspace/README.md"), ask[0], ask[1])) == allowed
	}
}

test_url_elicitation_to_allowed_host_allowed if {
	every url in ["https://api.example.com", "https://api.example.com/auth?state=1", "https://api.example.com:443/x", "HTTPS://Api.Example.Com/x"] {
		verdict(elicit_url(url)) == allowed
	}
}

test_url_elicitation_to_other_host_denied if {
	every url in [
		"https://evil.example/x", "http://api.example.com/auth", "https://api.example.com.evil.com/",
		"https://api.example.com@evil.com/", "https://user@api.example.com/", "https://api.example.com:8443/",
		"https://api.example.com/@evil", "data:text/html,hi", "file:///etc/passwd", "//api.example.com/", "",
	] {
		verdict(elicit_url(url)) == host_denied(url)
	}
}

test_url_elicitation_without_string_url_denied if {
	no_url := asking(read_file("/workspace/README.md"), "elicitation/create", {"mode": "url", "message": "x"})
	verdict(no_url) == host_denied("")
	every url in [null, 443, true, ["https://api.example.com/"], {"href": "https://api.example.com/"}] {
		denied_by(verdict(elicit_url(url)), "tool_access.host: ")
	}
}

# Params that are not an object have no mode: no URL to check.
test_input_request_with_non_object_params_allowed if {
	every params in [null, "https://evil.example/", ["url"], 0] {
		verdict(asking(read_file("/workspace/README.md"), "elicitation/create", params)) == allowed
	}
}

# The category rule still applies to the call that asks; a URL elicitation adds its own.
test_input_request_keeps_the_category_rule if {
	ask := asking(tool_call(untrusted, "query_database", good_query), "elicitation/create", form_elicitation)
	verdict(ask) == denied("tool_access.category: untrusted may not use database tools")
	bad := asking(tool_call(semi_trusted, "fetch_url", good_url), "elicitation/create", url_elicitation("https://evil.example/x"))
	verdict(bad) == {"allow": false, "deny": {
		"tool_access.category: semi-trusted may not use network tools",
		`tool_access.host: "https://evil.example/x" is not an allowed https host`,
	}}
	verdict(asking(tool_call(trusted, "delete_everything", {}), "roots/list", {})) == {"allow": false, "deny": set()}
}

# The call's arguments were checked when it was made: a bad one is not named again.
test_input_request_skips_argument_rules if {
	every call in [read_file("/etc/passwd"), tool_call(trusted, "read_file", null), fetch_url("http://evil.com/")] {
		verdict(asking(call, "roots/list", {})) == allowed
	}
	verdict(asking(read_file("/etc/passwd"), "elicitation/create", url_elicitation("https://evil.example/x"))) == host_denied("https://evil.example/x")
}

# The URL rule reads only an input request's own params: a call with the same shape
# of arguments, or a URL-mode input_request on a plain request, is not an elicitation.
test_url_rule_only_for_input_requests if {
	not_asked := object.union(modern(read_file("/workspace/README.md")), {"mcp": {"input_request": {"key": "k", "method": "elicitation/create", "params": url_elicitation("https://evil.example/")}}})
	verdict(not_asked) == allowed
}
