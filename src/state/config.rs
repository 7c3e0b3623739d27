//! The `state:` section: where DPoP replay entries and session bindings are kept.
//!
//! ```yaml
//! state:
//!   backend: redis                      # memory (default) | redis
//!   redis:
//!     url: rediss://redis.infra.svc:6380/0
//!     username: mcp-pep                 # ACL user (optional)
//!     password_file: /var/run/secrets/redis/password
//!     ca_file: /var/run/secrets/redis/ca.crt
//!     key_prefix: "mcp-pep:tools:"
//!     timeout_ms: 250
//!     connect_timeout_ms: 1000
//!     pool_size: 2
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::redis::RedisSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `memory`: this process only (one replica); `redis`: shared by replicas.
    pub backend: String,
    pub redis: RedisConfig,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { backend: "memory".into(), redis: RedisConfig::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: Option<String>,
    pub username: Option<String>,
    /// A file holding the `AUTH` password (a mounted Secret); read once at start.
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle for `rediss://` servers with a private CA.
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub pool_size: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            username: None,
            password_file: None,
            ca_file: None,
            key_prefix: "mcp-pep:".into(),
            timeout_ms: 250,
            connect_timeout_ms: 1_000,
            pool_size: 2,
        }
    }
}

/// The checked `state:` section.
#[derive(Debug, Clone)]
pub enum StateSettings {
    Memory,
    Redis(RedisSettings),
}

impl StateSettings {
    pub fn is_shared(&self) -> bool {
        matches!(self, StateSettings::Redis(_))
    }
}

/// A problem with one key of the `state:` section. Never quotes a secret.
#[derive(Debug)]
pub struct StateConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl StateConfig {
    /// `session_idle` is `sessions.idle_timeout_s`: Redis expires idle bindings itself.
    pub fn validate(&self, session_idle: Duration) -> Result<StateSettings, StateConfigError> {
        let invalid = |key, problem: String| StateConfigError { key, problem };
        match self.backend.as_str() {
            "memory" => return Ok(StateSettings::Memory),
            "redis" => {}
            other => return Err(invalid("state.backend", format!("{other:?} must be memory or redis"))),
        }
        let r = &self.redis;
        let url =
            r.url.as_deref().ok_or_else(|| invalid("state.redis.url", "is required with backend redis".into()))?;
        // Parsed with `url` to check it without echoing a password it may contain.
        let parsed = url::Url::parse(url).map_err(|e| invalid("state.redis.url", format!("not a URL ({e})")))?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(invalid("state.redis.url", format!("scheme {other:?} must be redis or rediss"))),
        };
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("state.redis.url", "names no host".into()));
        }
        // The redis crate reads `#insecure` as "skip certificate verification".
        if parsed.fragment().is_some() {
            return Err(invalid("state.redis.url", "may not have a #fragment (#insecure is never accepted)".into()));
        }
        let password = match &r.password_file {
            None => None,
            Some(file) => Some(read_secret(file).map_err(|problem| invalid("state.redis.password_file", problem))?),
        };
        let ca_pem = match &r.ca_file {
            None => None,
            Some(_) if !tls => {
                return Err(invalid("state.redis.ca_file", "needs a rediss:// URL".into()));
            }
            Some(file) => {
                let pem = std::fs::read(file)
                    .map_err(|e| invalid("state.redis.ca_file", format!("{}: {e}", file.display())))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(invalid("state.redis.ca_file", format!("{}: no PEM certificate", file.display())));
                }
                Some(pem)
            }
        };
        if r.key_prefix.len() > 128 {
            return Err(invalid("state.redis.key_prefix", "is longer than 128 bytes".into()));
        }
        if !(1..=60_000).contains(&r.timeout_ms) {
            return Err(invalid("state.redis.timeout_ms", format!("{} must be between 1 and 60000", r.timeout_ms)));
        }
        if !(1..=60_000).contains(&r.connect_timeout_ms) {
            return Err(invalid(
                "state.redis.connect_timeout_ms",
                format!("{} must be between 1 and 60000", r.connect_timeout_ms),
            ));
        }
        if !(1..=64).contains(&r.pool_size) {
            return Err(invalid("state.redis.pool_size", format!("{} must be between 1 and 64", r.pool_size)));
        }
        Ok(StateSettings::Redis(RedisSettings {
            url: url.to_owned(),
            username: r.username.clone(),
            password,
            ca_pem,
            key_prefix: r.key_prefix.clone(),
            timeout: Duration::from_millis(r.timeout_ms),
            connect_timeout: Duration::from_millis(r.connect_timeout_ms),
            pool_size: r.pool_size,
            session_idle,
        }))
    }
}

/// A secret from a file: its text without trailing line breaks (as `kubectl create
/// secret --from-file` or `echo` leave them). Errors name the file, never the content.
pub fn read_secret(file: &Path) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", file.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{}: empty", file.display()));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(url: &str) -> StateConfig {
        StateConfig { backend: "redis".into(), redis: RedisConfig { url: Some(url.into()), ..RedisConfig::default() } }
    }

    #[test]
    fn memory_is_the_default() {
        assert!(matches!(StateConfig::default().validate(Duration::from_secs(1)), Ok(StateSettings::Memory)));
    }

    #[test]
    fn redis_urls_are_checked_without_echoing_secrets() {
        let idle = Duration::from_secs(60);
        assert!(redis("redis://127.0.0.1:6379/0").validate(idle).is_ok());
        assert!(redis("rediss://user:pw@redis.example:6380").validate(idle).is_ok());
        for bad in ["http://h", "rediss://h/#insecure", "redis:///x", "not a url"] {
            let e = redis(bad).validate(idle).unwrap_err();
            assert_eq!(e.key, "state.redis.url", "{bad}");
        }
        let e = redis("ftp://u:hunter2@h").validate(idle).unwrap_err();
        assert!(!e.problem.contains("hunter2"), "{}", e.problem);
        let mut c = redis("redis://h");
        c.backend = "etcd".into();
        assert_eq!(c.validate(idle).unwrap_err().key, "state.backend");
        let mut c = redis("redis://h");
        c.redis.ca_file = Some("/nonexistent".into());
        assert_eq!(c.validate(idle).unwrap_err().key, "state.redis.ca_file");
        let mut c = redis("redis://h");
        c.redis.pool_size = 0;
        assert_eq!(c.validate(idle).unwrap_err().key, "state.redis.pool_size");
    }

    #[test]
    fn secrets_come_from_files_without_trailing_newlines() {
        let dir = std::env::temp_dir().join(format!("mcp-pep-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read_secret(&file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_secret(&file).unwrap_err().ends_with("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
