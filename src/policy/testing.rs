//! `opa test` for regorus: every `test_*` rule of every `*_test.rego` file must be `true`.
//!
//! regorus has no test runner. OPA discovers tests as rules whose name starts with
//! `test_`; we find them the same way in the source (rule heads start a line) and
//! evaluate `data.<package>.<rule>` on a clone of the loaded engine.

use std::path::{Path, PathBuf};

use super::engine::{PolicyError, Tests, is_test_file, load_engine};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoTest {
    pub file: PathBuf,
    pub package: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct RegoTestResult {
    pub test: RegoTest,
    /// `None` when the rule was `true`; otherwise what it was (false, undefined, error).
    pub failure: Option<String>,
}

/// Finds the `test_*` rules of one Rego source.
pub fn discover(file: &Path, source: &str) -> Vec<RegoTest> {
    let package =
        source.lines().find_map(|l| l.trim().strip_prefix("package ")).map(|p| p.trim().to_owned()).unwrap_or_default();
    let mut tests: Vec<RegoTest> = Vec::new();
    for line in source.lines() {
        let Some(rest) = line.strip_prefix("test_") else { continue };
        let tail: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let name = format!("test_{tail}");
        // A test may have several bodies (incremental definitions): run it once.
        if !tests.iter().any(|t| t.name == name) {
            tests.push(RegoTest { file: file.into(), package: package.clone(), name });
        }
    }
    tests
}

/// Runs every test of the policy directory.
pub fn run(dir: &Path) -> Result<Vec<RegoTestResult>, PolicyError> {
    let (engine, files) = load_engine(dir, Tests::Include)?;
    let mut results = Vec::new();
    for file in files.iter().filter(|f| is_test_file(f)) {
        let source =
            std::fs::read_to_string(file).map_err(|source| PolicyError::ReadFile { file: file.clone(), source })?;
        for test in discover(file, &source) {
            let mut engine = engine.clone();
            engine.set_input(regorus::Value::new_object());
            let failure = match engine.eval_rule(format!("data.{}.{}", test.package, test.name)) {
                Ok(regorus::Value::Bool(true)) => None,
                Ok(regorus::Value::Undefined) => Some("undefined".to_owned()),
                Ok(other) => Some(format!("{other}")),
                Err(e) => Some(format!("error: {e}")),
            };
            results.push(RegoTestResult { test, failure });
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_test_rules_once() {
        let src = "package a.b_test\nimport rego.v1\ntest_one if true\ntest_two if {\n true\n}\ntest_two if false\nnot_a_test if true\n  test_indented if true\n";
        let names: Vec<String> = discover(Path::new("x_test.rego"), src).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["test_one", "test_two"]);
        assert_eq!(discover(Path::new("x"), src)[0].package, "a.b_test");
    }
}
