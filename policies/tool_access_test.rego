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
# then the argument rules, which apply to calls (phase "call") and not to list items.
package mcp.tool_access_test

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

blank_mcp := {
	"method": null, "id": null, "tool": null, "prompt": null, "resource": null,
	"arguments": null, "is_error": false, "batch": false,
	"session_id": "s-1", "protocol_version": "2025-11-25",
}

message(phase, who, mcp) := {
	"version": 1,
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
