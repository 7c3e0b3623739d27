//! Policy hot reload: poll the policy directory, and when what it holds changes,
//! compile a new [`PolicySet`] and swap it in whole.
//!
//! Why polling file contents: a mounted ConfigMap changes by the kubelet writing a new
//! `..<timestamp>/` directory and renaming a `..data` symlink over the old one; the
//! visible names (`mcp.rego -> ..data/mcp.rego`) never change themselves, so a watch on
//! them sees nothing, and mtimes with one-second granularity make two pushes in the same
//! second look alike. Reading every visible file through its symlinks and comparing the
//! bytes sees every change, for a few reads of small files per interval.
//!
//! Why a failed reload changes nothing: the last good set keeps deciding (a broken push
//! must not open or close the proxy), the failure is counted and logged once per broken
//! content, and polling goes on so that the fixed push is picked up.

use std::ffi::OsString;
use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::engine::policy_files;
use super::{PolicyError, PolicySet, PolicyStore};
use crate::metrics::Metrics;

/// How often the first load looks again when the directory changes under it; a swap
/// is one rename, so a directory still moving after this many looks is not settling.
const FIRST_LOAD_ATTEMPTS: u32 = 3;
const FIRST_LOAD_RETRY: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// regorus panicked on the pushed policies; the reloader survives and keeps the
    /// last good set, as for any other broken push.
    #[error("loading the policies panicked: {0}")]
    Panicked(String),
    #[error("policy directory {0} kept changing while it was read")]
    Unsettled(PathBuf),
}

/// Watches one policy directory and keeps a [`PolicyStore`] loaded from it.
pub struct PolicyReloader {
    dir: PathBuf,
    entrypoint: String,
    /// Decisions each loaded set may cache (0: none).
    cache_entries: usize,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    /// What the store's current set was compiled from; `None` until a load succeeded.
    loaded: Option<Arc<Snapshot>>,
    /// The last state that failed to load. Remembered so that a broken push is counted
    /// and logged once, not at every tick while it stays.
    rejected: Option<Rejected>,
}

/// What one look at the directory came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Loaded, rejected, or nothing changed.
    Settled,
    /// The directory changed while it was read: look again.
    Moving,
}

enum Rejected {
    /// Files that were read but did not make a valid set.
    Content(Arc<Snapshot>),
    /// A directory that could not be read, by its error message.
    Unreadable(String),
}

impl PolicyReloader {
    pub fn new(dir: PathBuf, entrypoint: String, store: Arc<PolicyStore>, metrics: Arc<Metrics>) -> Self {
        PolicyReloader {
            dir,
            entrypoint,
            cache_entries: super::engine::DEFAULT_CACHE_ENTRIES,
            store,
            metrics,
            loaded: None,
            rejected: None,
        }
    }

    /// Sets how many decisions each loaded set may cache (`policy.decision_cache_entries`).
    pub fn with_cache_entries(mut self, entries: usize) -> Self {
        self.cache_entries = entries;
        self
    }

    /// The load at start. A failure is logged and counted like any reload: the proxy
    /// stays not ready, and the first good push (with reload on) makes it ready.
    pub async fn load_initial(&mut self) {
        for attempt in 1..=FIRST_LOAD_ATTEMPTS {
            if self.poll().await == Step::Settled {
                return;
            }
            if attempt < FIRST_LOAD_ATTEMPTS {
                tokio::time::sleep(FIRST_LOAD_RETRY).await;
            }
        }
        self.reject(Rejected::Unreadable("unsettled".into()), ReloadError::Unsettled(self.dir.clone()));
    }

    /// Looks at the directory every `interval` until `shutdown` resolves. A look in
    /// progress is abandoned at shutdown; it swaps nothing once abandoned.
    pub async fn run(mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        // The first tick would fire at once; the initial load has just looked.
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // After a slow look, wait a whole interval again rather than catching up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = &mut shutdown => break,
                _ = self.poll() => {}
            }
        }
        tracing::debug!(dir = %self.dir.display(), "policy reloader stopped");
    }

    /// One look: read the directory, and compile and swap in a new set if its content
    /// is neither the loaded one nor one already rejected.
    async fn poll(&mut self) -> Step {
        let dir = self.dir.clone();
        let snapshot = match blocking(move || Snapshot::read(&dir)).await {
            Ok(Ok(Some(snapshot))) => Arc::new(snapshot),
            Ok(Ok(None)) => return self.moving(),
            Ok(Err(e)) => return self.reject(Rejected::Unreadable(e.to_string()), e.into()),
            Err(e) => return self.reject(Rejected::Unreadable(e.to_string()), e),
        };
        if self.loaded.as_ref().is_some_and(|loaded| loaded.same_content(&snapshot)) {
            if self.rejected.take().is_some() {
                tracing::info!(dir = %self.dir.display(), "policy directory holds the loaded policies again");
            }
            return Step::Settled;
        }
        if matches!(&self.rejected, Some(Rejected::Content(r)) if r.same_content(&snapshot)) {
            return Step::Settled;
        }
        let (dir, entrypoint, before) = (self.dir.clone(), self.entrypoint.clone(), snapshot.clone());
        let entries = self.cache_entries;
        // Compiling takes milliseconds: off the async workers.
        let compiled =
            move || compile(&dir, &entrypoint, &before).map(|r| r.map(|set| set.with_cache_entries(entries)));
        match blocking(compiled).await {
            Ok(None) => self.moving(),
            Ok(Some(Ok(set))) => self.accept(snapshot, set),
            Ok(Some(Err(e))) => self.reject(Rejected::Content(snapshot), e.into()),
            Err(e) => self.reject(Rejected::Content(snapshot), e),
        }
    }

    fn accept(&mut self, snapshot: Arc<Snapshot>, set: PolicySet) -> Step {
        let first = self.loaded.is_none() && self.rejected.is_none();
        let (files, entrypoint) = (set.files().len(), set.entrypoint().to_owned());
        let revision = set.revision().clone();
        // One series, the current one: a dashboard shows when the revision changed.
        self.metrics.policy_revision.reset();
        self.metrics.policy_revision.with_label_values(&[&*revision]).set(1);
        // One store: requests that already hold the old set finish with it, the next
        // ones get the new set, and none sees a mix.
        self.store.replace(set);
        self.loaded = Some(snapshot);
        self.rejected = None;
        self.metrics.policy_reloads.with_label_values(&["ok"]).inc();
        let dir = self.dir.display();
        if first {
            tracing::info!(dir = %dir, files, entrypoint, %revision, "policies loaded");
        } else {
            tracing::info!(dir = %dir, files, entrypoint, %revision, "policies reloaded");
        }
        Step::Settled
    }

    fn reject(&mut self, rejected: Rejected, error: ReloadError) -> Step {
        if self.rejected.as_ref().is_some_and(|r| r.same(&rejected)) {
            return Step::Settled;
        }
        self.rejected = Some(rejected);
        self.metrics.policy_reloads.with_label_values(&["error"]).inc();
        let dir = self.dir.display();
        if self.store.is_ready() {
            tracing::error!(dir = %dir, error = %error, "policy reload failed; keeping the last good policies");
        } else {
            tracing::error!(dir = %dir, error = %error, "policies failed to load; denying every message until they do");
        }
        Step::Settled
    }

    fn moving(&self) -> Step {
        tracing::debug!(dir = %self.dir.display(), "policy directory changed while it was read; looking again");
        Step::Moving
    }
}

impl Rejected {
    fn same(&self, other: &Rejected) -> bool {
        match (self, other) {
            (Rejected::Content(a), Rejected::Content(b)) => a.same_content(b),
            (Rejected::Unreadable(a), Rejected::Unreadable(b)) => a == b,
            _ => false,
        }
    }
}

/// Every visible policy file of the directory at one moment.
///
/// Two snapshots have the same content (the fingerprint) when they hold the same names
/// with the same bytes. Exact equality also compares where each name resolved to: a
/// ConfigMap push lands in a new `..<timestamp>/` directory, so a load that began on
/// one push and ended on another shows even if the content went A → B → A meanwhile.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    files: Vec<SnapshotFile>,
}

#[derive(PartialEq, Eq)]
struct SnapshotFile {
    /// The visible name, e.g. `mcp.rego`.
    name: OsString,
    /// The real file behind the symlinks, e.g. `/policies/..2026_11_23_05_00_00.123/mcp.rego`.
    resolved: PathBuf,
    content: Vec<u8>,
}

/// Names only: policy text and data do not belong in a log line.
impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFile")
            .field("name", &self.name)
            .field("resolved", &self.resolved)
            .field("bytes", &self.content.len())
            .finish()
    }
}

impl Snapshot {
    /// Reads the files [`PolicySet::load`] would load, following symlinks. `Ok(None)`:
    /// a listed file was gone when read, i.e. a swap is under way.
    fn read(dir: &Path) -> Result<Option<Snapshot>, PolicyError> {
        let mut files = Vec::new();
        for path in policy_files(dir)? {
            let read = std::fs::canonicalize(&path).and_then(|resolved| Ok((resolved, std::fs::read(&path)?)));
            match read {
                Ok((resolved, content)) => {
                    let name = path.file_name().map(OsString::from).unwrap_or_default();
                    files.push(SnapshotFile { name, resolved, content });
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(PolicyError::ReadFile { file: path, source }),
            }
        }
        Ok(Some(Snapshot { files }))
    }

    fn same_content(&self, other: &Snapshot) -> bool {
        self.files.len() == other.files.len()
            && self.files.iter().zip(&other.files).all(|(a, b)| a.name == b.name && a.content == b.content)
    }
}

/// Compiles the directory `before` was read from, then reads it again: `PolicySet::load`
/// reads file by file, so a swap in between could pair the rules of one push with the
/// data of another. `None` when the directory changed meanwhile; nothing is kept then.
fn compile(dir: &Path, entrypoint: &str, before: &Snapshot) -> Option<Result<PolicySet, PolicyError>> {
    let loaded = PolicySet::load(dir, entrypoint);
    match Snapshot::read(dir) {
        Ok(Some(after)) if after == *before => Some(loaded),
        _ => None,
    }
}

/// Runs blocking file and compile work on tokio's blocking pool; a panic there becomes
/// an error instead of ending the reloader.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ReloadError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ReloadError::Panicked(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("mcp-pep-reload-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const ALLOW: &str = "package mcp\n\nimport rego.v1\n\ndecision := true\n";
    const DENY: &str = "package mcp\n\nimport rego.v1\n\ndecision := false\n";

    #[test]
    fn snapshot_follows_symlinks_and_skips_hidden_names() {
        let dir = Dir::new("snapshot");
        let real = dir.0.join("..v1");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("mcp.rego"), ALLOW).unwrap();
        std::os::unix::fs::symlink("..v1", dir.0.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/mcp.rego", dir.0.join("mcp.rego")).unwrap();
        std::fs::write(dir.0.join(".hidden.rego"), "broken").unwrap();

        let snapshot = Snapshot::read(&dir.0).unwrap().unwrap();
        assert_eq!(snapshot.files.len(), 1, "{snapshot:?}");
        assert_eq!(snapshot.files[0].name, "mcp.rego");
        assert_eq!(snapshot.files[0].content, ALLOW.as_bytes());
        assert!(snapshot.files[0].resolved.ends_with("..v1/mcp.rego"), "{snapshot:?}");
    }

    #[test]
    fn same_content_ignores_where_files_live_but_equality_does_not() {
        let file = |resolved: &str, content: &str| SnapshotFile {
            name: "mcp.rego".into(),
            resolved: resolved.into(),
            content: content.as_bytes().to_vec(),
        };
        let a1 = Snapshot { files: vec![file("/p/..1/mcp.rego", ALLOW)] };
        let a2 = Snapshot { files: vec![file("/p/..2/mcp.rego", ALLOW)] };
        let b = Snapshot { files: vec![file("/p/..1/mcp.rego", DENY)] };
        assert!(a1.same_content(&a2));
        assert_ne!(a1, a2);
        assert!(!a1.same_content(&b));
        assert!(!a1.same_content(&Snapshot { files: Vec::new() }));
    }

    #[test]
    fn a_directory_that_changed_since_it_was_read_is_not_compiled() {
        let dir = Dir::new("compile");
        std::fs::write(dir.0.join("mcp.rego"), ALLOW).unwrap();
        let before = Snapshot::read(&dir.0).unwrap().unwrap();
        assert!(compile(&dir.0, "data.mcp.decision", &before).is_some_and(|r| r.is_ok()));

        // What a swap between the first read and the compile looks like.
        std::fs::write(dir.0.join("mcp.rego"), DENY).unwrap();
        assert!(compile(&dir.0, "data.mcp.decision", &before).is_none());
    }

    #[tokio::test]
    async fn a_broken_state_is_counted_once_and_the_good_set_kept() {
        let dir = Dir::new("reject");
        std::fs::write(dir.0.join("mcp.rego"), ALLOW).unwrap();
        let store = Arc::new(PolicyStore::new());
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut reloader =
            PolicyReloader::new(dir.0.clone(), "data.mcp.decision".into(), store.clone(), metrics.clone());
        let count = |result: &str| metrics.policy_reloads.with_label_values(&[result]).get();

        reloader.load_initial().await;
        assert_eq!(count("ok"), 1);
        let good = store.current().unwrap();

        std::fs::write(dir.0.join("mcp.rego"), "package mcp\n\ndecision := {\n").unwrap();
        for _ in 0..5 {
            assert_eq!(reloader.poll().await, Step::Settled);
        }
        assert_eq!(count("error"), 1);
        assert!(Arc::ptr_eq(&good, &store.current().unwrap()), "a broken push replaced the set");

        std::fs::remove_dir_all(&dir.0).unwrap();
        reloader.poll().await;
        reloader.poll().await;
        assert_eq!(count("error"), 2, "an unreadable directory is one more failure, counted once");

        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join("mcp.rego"), DENY).unwrap();
        reloader.poll().await;
        assert_eq!(count("ok"), 2);
        assert!(!store.current().unwrap().evaluate(regorus::Value::new_object()).unwrap().allow);
    }
}
