//! `config::Config::parse` and `Config::validate`: the config file (or
//! `MCP_PEP_CONFIG_YAML`) to the settings the proxy runs with.
//!
//! Before validation the paths the text names are pointed into a scratch directory:
//! `policy.dir` at an empty directory, `auth.issuers[].jwks_file` at a valid JWKS, the
//! identity and credential files at names that do not exist. The target reads no file
//! of the host, and validation gets past the file checks to the keys behind them.
//! - never panics, whatever the text;
//! - parsing is a function of the text (the same verdict and value twice);
//! - refused: the error names the origin it was given;
//! - validated: the settings say what the file says (listen and admin addresses,
//!   `mcp_path` starting with `/`, an absolute http(s) upstream, a 2xx/4xx deny status,
//!   the reload interval, depth 1–128, origins, sessions iff bound, auth iff issuers).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_pep::config::{Config, ConfigError};

const ORIGIN: &str = "fuzz.yaml";

/// A JWKS with one P-256 key (the `dpop_proof` target's).
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256","x":"DSb0aUTLwbcCmajGAhWU5uAEK3OEReU6b7-OOOk0B2s","y":"gP5eA119jfhyD0_O_7xV4ZwXQRkYUekuDPWAy1bTRP8"}]}"#;

struct Scratch {
    policies: PathBuf,
    jwks: PathBuf,
    missing: PathBuf,
}

static SCRATCH: LazyLock<Scratch> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("mcp-pep-fuzz-config-{}", std::process::id()));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, JWKS).unwrap();
    Scratch { policies, jwks, missing: dir.join("missing") }
});

/// Points every path of `config` into the scratch directory.
fn confine(config: &mut Config) {
    let s = &*SCRATCH;
    if config.policy.dir.is_some() {
        config.policy.dir = Some(s.policies.clone());
    }
    for issuer in &mut config.auth.issuers {
        if issuer.jwks_file.is_some() {
            issuer.jwks_file = Some(s.jwks.clone());
        }
    }
    let files = &mut config.identity.files;
    for path in [&mut files.cert, &mut files.key].into_iter().flatten() {
        *path = s.missing.clone();
    }
    for path in files.bundles.values_mut().chain(files.jwt_bundles.values_mut()) {
        *path = s.missing.clone();
    }
    if let Some(c) = &mut config.upstream.credentials
        && c.assertion_file.is_some()
    {
        c.assertion_file = Some(s.missing.clone());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = Config::parse(text);
    let again = Config::parse(text);
    assert_eq!(format!("{parsed:?}"), format!("{again:?}"), "parsing the same text twice differs");
    let Ok(mut config) = parsed else { return };
    confine(&mut config);

    let settings = match config.validate(ORIGIN) {
        Ok(settings) => settings,
        Err(ConfigError::Invalid { origin, key, problem }) => {
            assert_eq!(origin, ORIGIN);
            assert!(!key.is_empty() && !problem.is_empty());
            return;
        }
        Err(e) => panic!("validate gave a file error for text: {e}"),
    };

    assert_eq!(Some(settings.listen), config.listen.parse().ok());
    assert_eq!(settings.admin_listen, config.admin_listen.parse().ok());
    assert_eq!(settings.admin_listen.is_none(), config.admin_listen.is_empty());
    assert_eq!(settings.policy_dir, SCRATCH.policies);
    assert!(settings.entrypoint.starts_with("data."));
    let reload = config.policy.reload_interval_ms;
    assert_eq!(settings.policy_reload_interval, (reload != 0).then(|| Duration::from_millis(reload)));
    assert!(reload == 0 || (10..=3_600_000).contains(&reload));

    let stack = &settings.stack;
    assert!(stack.mcp_path.starts_with('/'));
    assert_eq!(stack.mcp_path, config.mcp_path);
    assert_eq!(stack.allowed_origins, config.allowed_origins);
    assert!(stack.allowed_origins.iter().all(|o| o != "*" && !o.ends_with('/')));
    assert!(matches!(stack.upstream_url.scheme_str(), Some("http" | "https")));
    assert!(stack.upstream_url.authority().is_some());
    assert_eq!(stack.upstream_tls.is_some(), stack.upstream_url.scheme_str() == Some("https"));
    let status = stack.policy.deny_status;
    assert!(status.is_success() || status.is_client_error(), "deny status {status}");
    assert_eq!(status.as_u16(), config.policy.deny_status);
    assert_eq!(stack.limits.max_depth, config.limits.max_json_depth);
    assert!((1..=128).contains(&stack.limits.max_depth));
    assert!(stack.limits.max_body_bytes > 0 && settings.listener.max_connections > 0);
    assert_eq!(stack.sessions.is_some(), config.sessions.bind);
    assert_eq!(stack.auth.is_some(), !config.auth.issuers.is_empty());
    assert_eq!(stack.outbound.is_some(), config.upstream.credentials.is_some());
    assert!(matches!(settings.log.format.as_str(), "text" | "json"));
});
