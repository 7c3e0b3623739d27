//! `mcp-pep demo` is the README's first command: it must run and show the trust model's
//! matrix for three agents (speaking MCP 2026-07-28) with their own SVIDs and tokens, the
//! credentials checks and the header checks, decided for real.

use std::process::{Command, Stdio};

/// The verdict printed for `label` in the section of `agent`.
fn verdict<'a>(output: &'a str, agent: &str, label: &str) -> Option<&'a str> {
    let section = output.split("\n\n").find(|s| s.starts_with(agent))?;
    let line = section.lines().find(|l| l.trim_start().starts_with(label))?;
    line.split_whitespace().find(|w| matches!(*w, "allowed" | "denied" | "refused"))
}

#[test]
fn demo_shows_the_matrix_and_the_credentials_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-pep"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let expect = [
        ("trusted-agent", "execute_command", "allowed"),
        ("trusted-agent", "fetch_url", "allowed"),
        ("trusted-agent", "read_file {\"path\":\"/workspace/../etc/shadow\"}", "denied"),
        ("semi-trusted-agent", "query_database", "allowed"),
        ("semi-trusted-agent", "write_file", "denied"),
        ("semi-trusted-agent", "execute_command", "denied"),
        ("untrusted-agent", "read_file {\"path\":\"/workspace/README.md\"}", "allowed"),
        ("untrusted-agent", "call_api", "denied"),
        ("untrusted-agent", "execute_command", "denied"),
        ("credentials", "token + fresh proof", "allowed"),
        ("credentials", "the same proof replayed", "refused"),
        ("credentials", "the token with another key's proof", "refused"),
        ("credentials", "token and key used from another workload", "refused"),
        ("headers", "Mcp-Name says execute_command", "refused"),
        ("headers", "Mcp-Param-Endpoint says /admin", "refused"),
        ("headers", "MCP-Protocol-Version says 2025-11-25", "refused"),
        ("trusted-agent", "server/discover", "allowed"),
    ];
    for (agent, label, want) in expect {
        assert_eq!(verdict(&text, agent, label), Some(want), "{agent} / {label} in:\n{text}");
    }
    // Every agent's MCP client holds nothing; its own sidecar got a DPoP-bound token with
    // the pod's JWT-SVID, and carried the calls over mTLS to the tool server's sidecar.
    for agent in ["trusted-agent", "semi-trusted-agent", "untrusted-agent"] {
        let line = format!(
            "{agent}  spiffe://mcp-identity.local/ns/mcp-agents/sa/{agent} — its MCP client holds no credential"
        );
        assert!(text.contains(&line), "{line} missing in:\n{text}");
        let issued = format!(
            "JWT-SVID of spiffe://mcp-identity.local/ns/mcp-agents/sa/{agent} accepted; DPoP token bound to jkt"
        );
        assert!(text.contains(&issued), "{issued} missing in:\n{text}");
    }
    assert!(!text.contains("-32020 \n") && !text.contains("session failed"), "{text}");
    assert!(text.contains("the caller proved spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent"), "{text}");
    // tools/list is filtered per caller, and so never cacheable by others.
    assert!(text.contains("1 tools: read_file (cacheScope \"private\" ttlMs 60000)"), "untrusted list:\n{text}");
    // The agents speak 2026-07-28: write_file's confirmation is a multi-round-trip
    // request the sidecar lets through for the trusted agent, then the retry succeeds.
    let trusted = text.split("\n\n").find(|s| s.starts_with("trusted-agent")).unwrap_or_default();
    assert!(trusted.contains("the server asks confirm: elicitation/create"), "{trusted}");
    assert!(trusted.contains("write_file(path=\"/workspace/notes.md\")"), "{trusted}");
    // Denials carry the 2026-07-28 application code, outside the JSON-RPC reserved range.
    assert!(text.contains("denied") && text.contains("-31001"), "{text}");
}
