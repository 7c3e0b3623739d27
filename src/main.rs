// regorus allocates heavily while evaluating (a fifth of a decision is malloc/free);
// mimalloc's thread-local free lists make that markedly cheaper than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the enum's 16th entry);
/// libmimalloc-sys names no constant for it. `purge_delay_is_option_15` checks the index.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS at once. mimalloc's default (1 s) purges only from a
/// thread that allocates again, so an idle sidecar kept the peak of its last burst: 4 000
/// closed SSE streams left 285 MiB resident. Measured in docs/benchmarks.md ("Profile"):
/// idle RSS 36 → 26 MiB, no throughput lost. `MIMALLOC_PURGE_DELAY` in the environment wins.
fn return_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

fn main() -> std::process::ExitCode {
    return_freed_memory();
    mcp_pep::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mimalloc reads `MIMALLOC_PURGE_DELAY` into `mi_option_purge_delay` at start: a child
    /// started with it set to 7 must read 7 at index 15, so the index names that option.
    #[test]
    fn purge_delay_is_option_15() {
        if std::env::var_os("MCP_PEP_PURGE_CHILD").is_some() {
            // SAFETY: reads one integer option.
            let got = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(got, 7, "option {MI_OPTION_PURGE_DELAY} is not the purge delay");
            return;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let status = std::process::Command::new(exe)
            .args(["--exact", "tests::purge_delay_is_option_15", "--nocapture"])
            .env("MCP_PEP_PURGE_CHILD", "1")
            .env("MIMALLOC_PURGE_DELAY", "7")
            .status()
            .expect("the child test");
        assert!(status.success(), "the child read another option");
        return_freed_memory();
        // SAFETY: reads one integer option.
        let now = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(now, if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() { now } else { 0 });
    }
}
