//! `mcp-pep inject`: manifests in, manifests out, like `linkerd inject`.
//!
//! A stream is split into its YAML documents at `---` lines. A document that injection
//! leaves as it is (another kind, skipped, already injected the same way) is written back
//! byte for byte, comments included; a changed one is written by the YAML library in the
//! order its keys had (comments inside it are lost: the library does not keep them).

use std::path::Path;

use yaml_serde::Value;

use super::{InjectDefaults, InjectError, Outcome, inject_object, label};

/// One line of the report (stderr): `deployment/agent injected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub object: String,
    pub outcome: Result<Outcome, InjectError>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(Outcome::Injected) => write!(f, "{} injected", self.object),
            Ok(Outcome::Uninjected) => write!(f, "{} uninjected", self.object),
            Ok(Outcome::Skipped(why)) => write!(f, "{} skipped: {why}", self.object),
            Ok(Outcome::Other) => write!(f, "{} skipped: not a workload", self.object),
            Err(e) => write!(f, "{} error: {e}", self.object),
        }
    }
}

/// A document and the separator line that opened it.
struct Document<'a> {
    separator: Option<&'a str>,
    text: &'a str,
}

/// Splits at lines that are `---` (optionally followed by a space and more).
fn documents(stream: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let (mut start, mut separator) = (0, None);
    let mut offset = 0;
    for line in stream.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") {
            docs.push(Document { separator, text: &stream[start..offset] });
            separator = Some(line);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(Document { separator, text: &stream[start..] });
    // A stream that opens with `---` has nothing before it.
    if docs.first().is_some_and(|d| d.separator.is_none() && d.text.is_empty()) {
        docs.remove(0);
    }
    docs
}

/// Injects (or uninjects) every workload of a YAML stream. The output has the same
/// documents in the same order; the reports say what happened to each object.
pub fn inject_stream(stream: &str, defaults: &InjectDefaults, uninject: bool) -> (String, Vec<Report>) {
    let mut out = String::with_capacity(stream.len() * 2);
    let mut reports = Vec::new();
    for doc in documents(stream) {
        out.push_str(doc.separator.unwrap_or(""));
        match inject_document(doc.text, defaults, uninject, &mut reports) {
            Some(changed) => out.push_str(&changed),
            None => out.push_str(doc.text),
        }
    }
    (out, reports)
}

/// The new text of a document, or `None` to keep it as it is.
fn inject_document(text: &str, defaults: &InjectDefaults, uninject: bool, reports: &mut Vec<Report>) -> Option<String> {
    let mut value: Value = match yaml_serde::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            reports.push(Report { object: "document".into(), outcome: Err(InjectError::Yaml(e.to_string())) });
            return None;
        }
    };
    if value.is_null() {
        return None;
    }
    let changed = if value.get("kind").and_then(Value::as_str) == Some("List") {
        let mut any = false;
        for item in value.get_mut("items").and_then(Value::as_sequence_mut).into_iter().flatten() {
            any |= one(item, defaults, uninject, reports);
        }
        any
    } else {
        one(&mut value, defaults, uninject, reports)
    };
    // Unchanged when injection reproduced what was there (idempotence): keep the bytes.
    let original: Value = yaml_serde::from_str(text).ok()?;
    if !changed || original == value {
        return None;
    }
    // The library drops comments; the ones heading the document are kept by hand.
    let heading: String = text
        .split_inclusive('\n')
        .take_while(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
        .collect();
    yaml_serde::to_string(&value).ok().map(|body| heading + &body)
}

/// One object; `true` when it may have changed.
fn one(object: &mut Value, defaults: &InjectDefaults, uninject: bool, reports: &mut Vec<Report>) -> bool {
    let before = object.clone();
    let outcome = inject_object(object, defaults, None, uninject);
    let changed = matches!(outcome, Ok(Outcome::Injected | Outcome::Uninjected));
    if !changed {
        // Skipped, other or refused: exactly as it came.
        *object = before;
    }
    reports.push(Report { object: label(object), outcome });
    changed
}

/// Reads `-` (stdin), a file, or a directory (its `*.yaml`, `*.yml` and `*.json` files,
/// recursively, in name order) into one stream.
pub fn read_input(path: &str) -> std::io::Result<String> {
    if path == "-" {
        return std::io::read_to_string(std::io::stdin());
    }
    let path = Path::new(path);
    if !path.is_dir() {
        return std::fs::read_to_string(path);
    }
    let mut files = Vec::new();
    collect(path, &mut files)?;
    files.sort();
    let mut stream = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        if !stream.is_empty() && !text.starts_with("---") {
            stream.push_str("---\n");
        }
        stream.push_str(&text);
        if !stream.ends_with('\n') {
            stream.push('\n');
        }
    }
    Ok(stream)
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json")) {
            files.push(path);
        }
    }
    Ok(())
}
