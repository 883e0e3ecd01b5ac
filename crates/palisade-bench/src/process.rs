//! Whole processes measured by GNU time (`/usr/bin/time`): wall and CPU seconds, peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One measured process: wall and CPU seconds, peak memory in MiB.
#[derive(Clone, Copy)]
pub struct Run {
    pub wall: f64,
    pub cpu: f64,
    pub peak_mib: f64,
}

/// The `palisade` binary built next to this one (`cargo build --release -p palisade-cli`).
pub fn palisade_binary() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    let p = me.with_file_name("palisade");
    assert!(p.exists(), "{} is missing: build palisade-cli in the same profile first", p.display());
    p
}

/// Runs a program under GNU time; its stdout, and what it cost. Panics unless it exits 0.
pub fn timed(program: &Path, args: &[String], scratch: &Path) -> (Run, String) {
    timed_exit(program, args, scratch, &[0])
}

/// [`timed`], accepting any of the exit codes `ok` (`lint` exits 1 when it finds errors).
pub fn timed_exit(program: &Path, args: &[String], scratch: &Path, ok: &[i32]) -> (Run, String) {
    let report = scratch.join("time.txt");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&report)
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let code = out.status.code().unwrap_or(-1);
    assert!(
        ok.contains(&code),
        "{} {} exited {code}: {}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::fs::read_to_string(&report).expect("GNU time's report");
    let f: Vec<f64> = t.lines().last().unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert_eq!(f.len(), 4, "unexpected GNU time report: {t}");
    let run = Run { wall: f[0], cpu: f[1] + f[2], peak_mib: f[3] / 1024.0 };
    (run, String::from_utf8(out.stdout).expect("UTF-8 output"))
}

/// Each figure's median over the runs (separately).
pub fn median(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Run { wall: m(|r| r.wall), cpu: m(|r| r.cpu), peak_mib: m(|r| r.peak_mib) }
}
