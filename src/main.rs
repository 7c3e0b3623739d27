// regorus allocates heavily while evaluating (a fifth of a decision is malloc/free);
// mimalloc's thread-local free lists make that markedly cheaper than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mcp_pep::cli::main()
}
