//! `kubectl-palisade`: the same command as `palisade`, named so that kubectl finds it on the
//! PATH as a plugin (`kubectl palisade check ...`); usage and help say `kubectl palisade`.

fn main() -> std::process::ExitCode {
    palisade_cli::main("kubectl palisade")
}
