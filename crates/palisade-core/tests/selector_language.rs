//! The Calico selector language against `tests/selectors/cases.txt`.

use palisade_core::expr::Expr;
use palisade_core::label::Labels;

fn labels(s: &str) -> Labels {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.trim().split_once('=').expect("k=v");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn selector_cases() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/selectors/cases.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        // RESULT and LABELS hold no '|'; the expression (which may hold "||") lies between.
        let (first, last) = (line.find('|').expect("RESULT |"), line.rfind('|').expect("| LABELS"));
        let (want, expr, labels_text) = (line[..first].trim(), line[first + 1..last].trim(), &line[last + 1..]);
        count += 1;
        let got = match Expr::parse(expr) {
            Err(e) => format!("error@{}", e.offset + 1),
            Ok(e) => {
                // The printed form must parse back to the same expression.
                let again = Expr::parse(&e.to_string());
                if again.as_ref() != Ok(&e) {
                    failures.push(format!("line {}: {expr:?} prints as {e} which parses as {again:?}", n + 1));
                }
                if e.matches(&labels(labels_text)) { "match" } else { "nomatch" }.to_string()
            }
        };
        if got != want {
            failures.push(format!(
                "line {}: {expr:?} on {{{}}}: expected {want}, got {got}",
                n + 1,
                labels_text.trim()
            ));
        }
    }
    assert!(count > 50, "only {count} cases read");
    assert!(failures.is_empty(), "{} of {count} selector cases failed:\n{}", failures.len(), failures.join("\n"));
}
