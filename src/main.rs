fn main() -> std::process::ExitCode {
    mcp_pep::cli::main()
}
