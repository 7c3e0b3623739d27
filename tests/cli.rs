//! Black-box tests of the `mcp-pep` binary: `check-config` errors and overrides, and
//! `run` printing its addresses and stopping on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{ALLOW_EXCEPT_FORBIDDEN, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-pep");

/// The binary with no `MCP_PEP_*` variables inherited from the test environment.
fn mcp_pep() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MCP_PEP_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory with `policy/mcp.rego` and a `config.yaml` holding `yaml`
/// (`POLICY_DIR` in it is replaced by the policy directory).
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(yaml: &str) -> Fixture {
        let dir = TempDir::new("cli");
        let policy = dir.path().join("policy");
        std::fs::create_dir(&policy).unwrap();
        std::fs::write(policy.join("mcp.rego"), ALLOW_EXCEPT_FORBIDDEN).unwrap();
        dir.write("config.yaml", &yaml.replace("POLICY_DIR", &policy.display().to_string()));
        Fixture { dir }
    }

    fn config(&self) -> String {
        self.dir.path().join("config.yaml").display().to_string()
    }

    fn check(&self) -> Command {
        let mut cmd = mcp_pep();
        cmd.args(["check-config", "--config", &self.config()]);
        cmd
    }
}

const GOOD: &str = "listen: 127.0.0.1:18080\nadmin_listen: 127.0.0.1:19090\nupstream:\n  url: http://127.0.0.1:3000/mcp\npolicy:\n  dir: POLICY_DIR\n";

#[test]
fn unknown_key_names_the_file_and_the_key() {
    let f = Fixture::new(&format!("{GOOD}listen_adress: 0.0.0.0:1\n"));
    let out = output(&mut f.check());
    assert!(!out.status.success(), "unknown key accepted");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&f.config()), "file not named: {stderr}");
    assert!(stderr.contains("listen_adress"), "key not named: {stderr}");
}

#[test]
fn unknown_nested_key_names_the_key() {
    let f = Fixture::new(&format!("{GOOD}limits:\n  max_body: 10\n"));
    let out = output(&mut f.check());
    assert!(!out.status.success(), "unknown key accepted");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&f.config()), "file not named: {stderr}");
    assert!(stderr.contains("max_body"), "key not named: {stderr}");
}

#[test]
fn invalid_listen_names_listen() {
    let f = Fixture::new(&GOOD.replace("listen: 127.0.0.1:18080", "listen: not-an-address"));
    let out = output(&mut f.check());
    assert!(!out.status.success(), "bad listen accepted");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`listen`"), "key not named: {stderr}");
    assert!(stderr.contains("not-an-address"), "value not named: {stderr}");
}

#[test]
fn missing_upstream_names_upstream_url() {
    let f = Fixture::new("listen: 127.0.0.1:18080\nadmin_listen: 127.0.0.1:19090\npolicy:\n  dir: POLICY_DIR\n");
    let out = output(&mut f.check());
    assert!(!out.status.success(), "missing upstream accepted");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("upstream.url"), "key not named: {stderr}");
}

#[test]
fn good_config_and_policy_dir_exit_zero() {
    let f = Fixture::new(GOOD);
    let out = output(&mut f.check());
    assert!(out.status.success(), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("http://127.0.0.1:3000/mcp"), "stdout: {stdout}");
}

#[test]
fn broken_policy_fails_check_config() {
    let f = Fixture::new(GOOD);
    std::fs::write(f.dir.path().join("policy").join("mcp.rego"), "package mcp\n\ndecision := {\n").unwrap();
    let out = output(&mut f.check());
    assert!(!out.status.success(), "broken policy accepted");
    assert!(text(&out.stderr).contains("mcp.rego"), "{}", text(&out.stderr));
}

#[test]
fn env_and_flag_override_the_file_upstream() {
    let f = Fixture::new(GOOD);
    let out = output(f.check().env("MCP_PEP_UPSTREAM", "http://127.0.0.2:4000/env"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("http://127.0.0.2:4000/env"), "{stdout}");
    assert!(!stdout.contains("127.0.0.1:3000"), "{stdout}");

    let out = output(
        f.check()
            .env("MCP_PEP_UPSTREAM", "http://127.0.0.2:4000/env")
            .args(["--upstream", "http://127.0.0.3:5000/flag"]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("http://127.0.0.3:5000/flag"), "{stdout}");
    assert!(!stdout.contains("/env"), "flag must win over env: {stdout}");

    // An override is validated like the file value.
    let out = output(f.check().args(["--upstream", "ftp://tls.example/mcp"]));
    assert!(!out.status.success(), "non-http upstream accepted");
    assert!(text(&out.stderr).contains("upstream.url"), "{}", text(&out.stderr));
    // https means mTLS with SPIFFE: without the server's expected SPIFFE ID it is refused.
    let out = output(f.check().args(["--upstream", "https://tls.example/mcp"]));
    assert!(!out.status.success(), "https upstream without spiffe_id accepted");
    assert!(text(&out.stderr).contains("upstream.spiffe_id"), "{}", text(&out.stderr));
}

/// Kills the child on drop if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn run_prints_its_addresses_and_exits_cleanly_on_sigterm() {
    let f = Fixture::new(GOOD);
    let child = mcp_pep()
        .args(["run", "--config", &f.config(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mcp-pep run");
    let mut child = Running(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("a line on stdout");

    // mcp-pep listening mcp=http://127.0.0.1:PORT/mcp admin=http://127.0.0.1:PORT
    let rest = line
        .strip_prefix("mcp-pep listening mcp=http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected line: {line}"));
    let (mcp_port, rest) =
        rest.split_once("/mcp admin=http://127.0.0.1:").unwrap_or_else(|| panic!("unexpected line: {line}"));
    let mcp_port: u16 = mcp_port.parse().unwrap_or_else(|_| panic!("{line}"));
    let admin_port: u16 = rest.parse().unwrap_or_else(|_| panic!("{line}"));
    assert_ne!(mcp_port, 0);
    assert_ne!(admin_port, 0);

    // The printed admin address really serves.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let healthz = runtime.block_on(async {
        let req =
            http::Request::get(format!("http://127.0.0.1:{admin_port}/healthz")).body(support::empty_body()).unwrap();
        support::send(req).await
    });
    assert_eq!(healthz.status, http::StatusCode::OK);
    drop(runtime);

    let kill = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "mcp-pep still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", mcp_port)).is_err(), "still listening after exit");
}

#[test]
fn check_config_loads_the_svid_files_and_reports_the_identity() {
    let pki = support::tls::Pki::new();
    let yaml = format!(
        "upstream: {{url: http://127.0.0.1:3000/mcp}}\npolicy: {{dir: POLICY_DIR}}\nidentity:\n  source: files\n  \
         files: {{cert: {}, key: {}, bundles: {{mcp-identity.local: {}}}}}\n  mtls: true\n  \
         trust_domains: [mcp-identity.local]\n",
        pki.path("svid.pem").display(),
        pki.path("svid.key").display(),
        pki.path("bundle.pem").display()
    );
    let f = Fixture::new(&yaml);
    let out = output(&mut f.check());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("identity: source files mtls on"), "{stdout}");
    assert!(stdout.contains(support::tls::SIDECAR), "{stdout}");

    // mTLS without trust domains is refused.
    let f = Fixture::new(&yaml.replace("  trust_domains: [mcp-identity.local]\n", ""));
    let out = output(&mut f.check());
    assert!(text(&out.stderr).contains("identity.trust_domains"), "{}", text(&out.stderr));

    // A key that does not belong to the certificate is a configuration error, by key.
    let other = pki.agent(support::tls::TRUSTED);
    pki.dir.write("svid.key", &other.key_pem());
    let f = Fixture::new(&yaml);
    let out = output(&mut f.check());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("identity.files"), "{}", text(&out.stderr));
}
