# The modern stage's permissive policy: every message is allowed. It proves the clients,
# the servers and the conformance suite work through mcp-pep at all; the denials of the
# modern stage come from the shipped policies (policies/) with a local SPIFFE identity.
package mcp

import rego.v1

decision := {"allow": true, "reasons": []}
