//! regorus behind a small interface: load a directory, evaluate one entrypoint.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regorus::{Engine, Value};

use super::cache::DecisionCache;
use super::input::{InputError, InputValue};
use super::reads::{InputReads, analyse};
use crate::context::Decision;

/// Decisions a set keeps for reuse, by default (`policy.decision_cache_entries`).
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// Every loaded set gets a new generation, so per-thread engine copies know when
/// they are stale.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy directory {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },
    #[error("{file}: {source}")]
    ReadFile { file: PathBuf, source: std::io::Error },
    #[error("{file}: {message}")]
    Compile { file: PathBuf, message: String },
    #[error("{file}: data: {message}")]
    Data { file: PathBuf, message: String },
    #[error("policy directory {0} holds no .rego file")]
    NoPolicies(PathBuf),
    #[error("entrypoint {entrypoint}: {message}")]
    Entrypoint { entrypoint: String, message: String },
    #[error("evaluation failed: {0}")]
    Eval(String),
}

/// A compiled set of policies and data with one decision entrypoint.
pub struct PolicySet {
    /// Warmed template; each worker thread evaluates on its own clone.
    template: Engine,
    entrypoint: String,
    generation: u64,
    files: Vec<PathBuf>,
    /// `sha256:` of the files' names and bytes: which policy made a decision.
    revision: Arc<str>,
    /// What the policies can read of their input (from their syntax trees).
    reads: InputReads,
    /// Decisions by the input's projection onto `reads`; `None`: off or not cacheable.
    cache: Option<DecisionCache>,
}

/// Whether a decision came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// Off, the set is not cacheable, or the input's key is too long.
    Bypass,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

thread_local! {
    /// regorus evaluates through `&mut Engine`: one engine per worker thread avoids a
    /// lock on the request path and a full clone per request.
    static WORKER_ENGINE: RefCell<Option<(u64, Engine)>> = const { RefCell::new(None) };
}

impl PolicySet {
    /// Loads every `*.rego`, `*.json`, `*.yaml`/`*.yml` file at the top of `dir` and
    /// checks that `entrypoint` evaluates.
    pub fn load(dir: &Path, entrypoint: &str) -> Result<Self, PolicyError> {
        let (engine, files, revision) = load_engine_with_revision(dir, Tests::Skip)?;
        Self::from_engine(engine, entrypoint, files, revision)
    }

    /// Builds a set from policy sources held in memory (tests, benches, the demo).
    pub fn from_sources(
        rego: &[(&str, &str)],
        data: Option<serde_json::Value>,
        entrypoint: &str,
    ) -> Result<Self, PolicyError> {
        let mut engine = new_engine();
        let mut revision = Revision::new();
        for (name, text) in rego {
            revision.add(name, text.as_bytes());
            engine
                .add_policy((*name).to_owned(), (*text).to_owned())
                .map_err(|e| PolicyError::Compile { file: (*name).into(), message: e.to_string() })?;
        }
        if let Some(data) = data {
            revision.add("<data>", data.to_string().as_bytes());
            engine
                .add_data(Value::from(data))
                .map_err(|e| PolicyError::Data { file: "<memory>".into(), message: e.to_string() })?;
        }
        Self::from_engine(engine, entrypoint, Vec::new(), revision.finish())
    }

    fn from_engine(
        mut engine: Engine,
        entrypoint: &str,
        files: Vec<PathBuf>,
        revision: String,
    ) -> Result<Self, PolicyError> {
        let entry_error =
            |e: anyhow::Error| PolicyError::Entrypoint { entrypoint: entrypoint.into(), message: e.to_string() };
        // One evaluation now surfaces a missing entrypoint or rule error at load time,
        // and leaves the engine prepared so clones do not prepare again.
        engine.set_input(Value::new_object());
        engine.eval_rule(entrypoint.to_owned()).map_err(entry_error)?;
        // A syntax tree that cannot be read leaves the whole input as read: no cache.
        let reads = engine
            .get_ast_as_json()
            .map_err(|e| e.to_string())
            .and_then(|ast| analyse(&ast))
            .unwrap_or_else(|_| InputReads::Paths(vec![Vec::new()]));
        let cache = DecisionCache::new(&reads, DEFAULT_CACHE_ENTRIES);
        Ok(PolicySet {
            template: engine,
            entrypoint: entrypoint.to_owned(),
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            files,
            revision: Arc::from(revision),
            reads,
            cache,
        })
    }

    /// The same set with a decision cache of `entries` (0: none).
    pub fn with_cache_entries(mut self, entries: usize) -> Self {
        self.cache = DecisionCache::new(&self.reads, entries);
        self
    }

    /// What the policies can read of their input.
    pub fn reads(&self) -> &InputReads {
        &self.reads
    }

    /// [`PolicySet::decide`] for a document as `input::build_value` gives it: one that
    /// could not be built is an evaluation error, denied and never cached.
    pub fn decide_built(&self, input: Result<InputValue, InputError>) -> (Result<Decision, PolicyError>, CacheOutcome) {
        match input {
            Ok(input) => self.decide(input),
            Err(e) => (Err(PolicyError::Eval(e.to_string())), CacheOutcome::Bypass),
        }
    }

    /// Evaluates `input` (the document of docs/policy-input.md), reusing the decision of
    /// an earlier input that agrees on every path the policies can read. Errors are
    /// never cached.
    pub fn decide(&self, input: InputValue) -> (Result<Decision, PolicyError>, CacheOutcome) {
        let key = match &self.cache {
            Some(cache) if input.keyable => cache.key(&input.value),
            _ => None,
        };
        let (Some(cache), Some(key)) = (&self.cache, key) else {
            return (self.evaluate(input.value), CacheOutcome::Bypass);
        };
        if let Some(decision) = cache.get(&key) {
            return (Ok(decision), CacheOutcome::Hit);
        }
        let decided = self.evaluate(input.value);
        if let Ok(decision) = &decided {
            cache.insert(key, decision.clone());
        }
        (decided, CacheOutcome::Miss)
    }

    /// `sha256:<hex>` over every loaded file's name and bytes, in load order.
    pub fn revision(&self) -> &Arc<str> {
        &self.revision
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn entrypoint(&self) -> &str {
        &self.entrypoint
    }

    /// Evaluates the entrypoint for one input. Errors are returned, never turned into
    /// an allow; the caller denies on them.
    pub fn evaluate(&self, input: Value) -> Result<Decision, PolicyError> {
        self.evaluate_raw(input).map(|value| decision_from(&value))
    }

    /// The entrypoint's value as the policy produced it (`Undefined` included).
    pub fn evaluate_raw(&self, input: Value) -> Result<Value, PolicyError> {
        WORKER_ENGINE.with(|slot| {
            let mut slot = slot.borrow_mut();
            let engine = match &mut *slot {
                Some((generation, engine)) if *generation == self.generation => engine,
                _ => &mut slot.insert((self.generation, self.template.clone())).1,
            };
            engine.set_input(input);
            engine.eval_rule(self.entrypoint.clone()).map_err(|e| PolicyError::Eval(e.to_string()))
        })
    }

    /// Evaluates on a fresh clone of the template, as the first request on a new thread
    /// would (benchmarks compare it with the per-thread engine).
    pub fn evaluate_fresh(&self, input: Value) -> Result<Decision, PolicyError> {
        let mut engine = self.template.clone();
        engine.set_input(input);
        let value = engine.eval_rule(self.entrypoint.clone()).map_err(|e| PolicyError::Eval(e.to_string()))?;
        Ok(decision_from(&value))
    }
}

/// The policy files of `dir`, sorted.
///
/// Names starting with `.` are skipped: a mounted ConfigMap keeps its real files in
/// `..data/` and `..<timestamp>/` and shows them at the top as symlinks.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| PolicyError::ReadDir { dir: dir.into(), source })?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            let hidden = p.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
            let known = matches!(extension(p), "rego" | "json" | "yaml" | "yml");
            !hidden && known && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A new engine with OPA's settings: Rego v1, builtin errors make an expression
/// undefined instead of failing the query.
pub fn new_engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    engine.set_strict_builtin_errors(false);
    engine
}

/// Whether `*_test.rego` files are compiled too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tests {
    /// Serving: tests never take part in decisions, and a broken test file must not
    /// stop a policy push.
    Skip,
    /// `mcp-pep policy test`.
    Include,
}

/// `*_test.rego`, as OPA names test files.
pub fn is_test_file(p: &Path) -> bool {
    extension(p) == "rego" && p.file_stem().and_then(|s| s.to_str()).is_some_and(|s| s.ends_with("_test"))
}

/// Compiles every policy and data file of `dir` into one engine.
pub fn load_engine(dir: &Path, tests: Tests) -> Result<(Engine, Vec<PathBuf>), PolicyError> {
    load_engine_with_revision(dir, tests).map(|(engine, files, _)| (engine, files))
}

/// A content hash of a policy set, built from the bytes the engine was given (never a
/// second read, which could see other files).
struct Revision(aws_lc_rs::digest::Context);

impl Revision {
    fn new() -> Self {
        Revision(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    /// Length-prefixed, so no two sets of (name, bytes) hash alike.
    fn add(&mut self, name: &str, bytes: &[u8]) {
        for part in [name.as_bytes(), bytes] {
            self.0.update(&(part.len() as u64).to_be_bytes());
            self.0.update(part);
        }
    }

    fn finish(self) -> String {
        let digest = self.0.finish();
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

fn load_engine_with_revision(dir: &Path, tests: Tests) -> Result<(Engine, Vec<PathBuf>, String), PolicyError> {
    let mut files = policy_files(dir)?;
    if tests == Tests::Skip {
        files.retain(|f| !is_test_file(f));
    }
    if !files.iter().any(|p| extension(p) == "rego") {
        return Err(PolicyError::NoPolicies(dir.into()));
    }
    let mut engine = new_engine();
    let mut revision = Revision::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).map_err(|source| PolicyError::ReadFile { file: file.clone(), source })?;
        // By name, not path: the same ConfigMap mounted elsewhere is the same revision.
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        revision.add(&name, text.as_bytes());
        let data_error = |e: anyhow::Error| PolicyError::Data { file: file.clone(), message: e.to_string() };
        match extension(file) {
            "rego" => {
                engine
                    .add_policy(file.display().to_string(), text)
                    .map_err(|e| PolicyError::Compile { file: file.clone(), message: e.to_string() })?;
            }
            "json" => engine.add_data(Value::from_json_str(&text).map_err(data_error)?).map_err(data_error)?,
            _ => engine.add_data(Value::from_yaml_str(&text).map_err(data_error)?).map_err(data_error)?,
        }
    }
    Ok((engine, files, revision.finish()))
}

/// Reads the entrypoint's value: `true`/`false`, or `{"allow": bool, "reasons": [..]}`.
/// Anything else (undefined, another shape) denies.
pub fn decision_from(value: &Value) -> Decision {
    match value {
        Value::Bool(true) => Decision::allow(),
        Value::Bool(false) => Decision::deny("policy returned false"),
        Value::Undefined => Decision::deny("policy decision is undefined"),
        Value::Object(obj) => {
            let allow = obj.get(&Value::from("allow"));
            let reasons = match obj.get(&Value::from("reasons")) {
                Some(Value::Array(items)) => items.iter().filter_map(as_string).collect(),
                Some(Value::Set(items)) => items.iter().filter_map(as_string).collect(),
                _ => Vec::new(),
            };
            match allow {
                Some(Value::Bool(true)) => Decision { allow: true, reasons },
                Some(Value::Bool(false)) if !reasons.is_empty() => Decision { allow: false, reasons },
                Some(Value::Bool(false)) => Decision::deny("policy denied without a reason"),
                _ => Decision::deny("policy decision has no boolean allow"),
            }
        }
        _ => Decision::deny("policy decision is neither a boolean nor an object"),
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string()),
        _ => None,
    }
}

pub(crate) fn extension(p: &Path) -> &str {
    p.extension().and_then(|e| e.to_str()).unwrap_or("")
}
