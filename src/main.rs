//! The `overnight` binary: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    overnight::cli::main()
}
