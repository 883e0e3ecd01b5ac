//! The `palisade` binary.

fn main() -> std::process::ExitCode {
    palisade_cli::main("palisade")
}
