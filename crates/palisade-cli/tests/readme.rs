//! The README's commands as a user runs them: the opening `palisade check` and the five-minute
//! tour run from where the README says, each exits as the README says, and the outputs the
//! README prints are what they print.

mod common;

use common::{palisade, repo};

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The fenced blocks of `text` that follow `marker` (the first `fence` block after it).
fn block_after<'a>(text: &'a str, marker: &str, fence: &str) -> &'a str {
    let from = text.find(marker).unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &text[from..];
    let open = rest.find(fence).unwrap() + fence.len();
    let body = &rest[open..];
    &body[..body.find("\n```").unwrap() + 1]
}

/// The `palisade ...` command lines of a shell block (comments and `cd` left out).
fn commands(block: &str) -> Vec<Vec<String>> {
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("palisade "))
        .map(|l| l.split_whitespace().skip(1).map(String::from).collect())
        .collect()
}

fn run_in(dir: &std::path::Path, args: &[String]) -> (Option<i32>, String) {
    let out = palisade().current_dir(dir).args(args).env("NO_COLOR", "1").output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn the_opening_command_prints_what_the_readme_shows() {
    let text = readme();
    let opening = commands(block_after(&text, "# Palisade", "```sh\n"));
    assert_eq!(opening.len(), 1, "one palisade command opens the README: {opening:?}");
    let (code, out) = run_in(&repo(), &opening[0]);
    assert_eq!(code, Some(0));
    assert_eq!(out, block_after(&text, "The first command prints:", "```\n"));
}

#[test]
fn every_tour_command_runs_as_the_readme_says() {
    let text = readme();
    let block = block_after(&text, "## A five-minute tour", "```sh\n");
    assert!(block.contains("cd examples/lateral-movement\n"));
    let dir = repo().join("examples/lateral-movement");
    let tour = commands(block);
    assert!(tour.len() >= 7, "{tour:?}");
    let scratch = std::env::temp_dir().join(format!("palisade-readme-tour-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    for args in &tour {
        // The report goes to a scratch directory, not into the repository.
        let args: Vec<String> = args
            .iter()
            .map(|a| if a == "shop.html" { scratch.join(a).display().to_string() } else { a.clone() })
            .collect();
        let (code, out) = run_in(&dir, &args);
        // diff --exit-code says 1 here: the change it is shown on opens connections.
        let expected = if args[0] == "diff" { 1 } else { 0 };
        assert_eq!(code, Some(expected), "palisade {}", args.join(" "));
        if args[0] == "check" {
            assert_eq!(out, block_after(&text, "`check` prints:", "```\n"), "the tour's check output");
        }
    }
    let report = std::fs::metadata(scratch.join("shop.html")).map(|m| m.len());
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(report.unwrap() > 1000, "the report is written");
}
