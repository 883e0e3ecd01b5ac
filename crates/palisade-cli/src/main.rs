//! The `palisade` binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    palisade_cli::main("palisade")
}
