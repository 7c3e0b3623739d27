//! The shipped policies' Rego unit tests (`policies/*_test.rego`), run through regorus
//! the way `mcp-pep policy test` runs them. tests/opa/run.sh runs the same tests in OPA.

use std::path::Path;

use mcp_pep::policy::testing;

#[test]
fn shipped_policy_tests_pass_in_regorus() {
    let results = testing::run(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|why| format!("{}.{}: {why}", r.test.package, r.test.name)))
        .collect();
    assert!(failed.is_empty(), "failing Rego tests:\n{}", failed.join("\n"));
    // Every cell of both matrices and every argument rule has a test: far more than 100.
    assert!(results.len() >= 100, "only {} Rego tests were found", results.len());
}

#[test]
fn a_failing_rego_test_is_reported() {
    let dir = std::env::temp_dir().join(format!("mcp-pep-rego-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.rego"), "package p\nimport rego.v1\nallow if input.ok\n").unwrap();
    std::fs::write(
        dir.join("p_test.rego"),
        "package p_test\nimport rego.v1\ntest_allows if data.p.allow with input as {\"ok\": true}\ntest_wrong if data.p.allow with input as {\"ok\": false}\n",
    )
    .unwrap();
    let results = testing::run(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let outcome: Vec<(&str, bool)> = results.iter().map(|r| (r.test.name.as_str(), r.failure.is_none())).collect();
    assert_eq!(outcome, [("test_allows", true), ("test_wrong", false)]);
}
