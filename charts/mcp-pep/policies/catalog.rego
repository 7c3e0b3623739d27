# What a message acts on, looked up in the catalog data (catalog.json).
#
# Used by the denial reasons of both layers. The layers' allow rules look the catalog
# up directly: in regorus every rule reference costs microseconds on the hot path.
package mcp.catalog

import rego.v1

# Methods that carry the protocol itself: open to every caller with a known trust
# level. The list methods are then filtered item by item, the resources a
# subscriptions/listen names URI by URI (phase "subscribe").
plumbing if input.kind in {"stream", "session_end", "response"}

# An input request comes back only from an action (the proxy refuses the others);
# one that claims a plumbing method is not plumbing.
plumbing if {
	input.mcp.method in data.mcp_pep.plumbing_methods
	input.kind != "input_request"
}

# Methods that act, governed by the matrices through the catalog entry.
action if input.mcp.method in {"tools/call", "prompts/get", "resources/read"}

entry := data.mcp_pep.tools[input.mcp.tool] if input.mcp.method == "tools/call"

entry := data.mcp_pep.prompts[input.mcp.prompt] if input.mcp.method == "prompts/get"

entry := data.mcp_pep.resources[input.mcp.resource] if input.mcp.method == "resources/read"

# The name the denial reasons quote.
subject := input.mcp.tool if input.mcp.method == "tools/call"

subject := input.mcp.prompt if input.mcp.method == "prompts/get"

subject := input.mcp.resource if input.mcp.method == "resources/read"

# A value as the denial reasons quote it: a string quoted, anything else by its
# type. sprintf's %q formats non-strings differently in OPA and regorus, and which
# non-ASCII characters it escapes depends on the Unicode version of the engine's
# tables: only printable ASCII is quoted as it is, anything else shows as "?".
quote(x) := sprintf("%q", [regex.replace(x, `[^\x20-\x7e]`, "?")]) if is_string(x)

else := type_name(x)
