//! "Did you mean": the names closest to one the user misspelt (manifest fields, pods,
//! workloads, namespaces, Services, nodes, port names, lint checks), by Jaro-Winkler similarity
//! as clap ranks flags.

/// Similarity (0..=1) a candidate needs to be offered; clap offers flags above 0.7 Jaro, and
/// Jaro-Winkler's prefix bonus makes 0.8 about as strict.
const NEAR: f64 = 0.8;

/// At most three candidates closest to `typed`, best first. Names sharing leading segments
/// (`namespace/`, `namespace/deployment/`) with `typed` are compared by what follows them, so
/// a long shared prefix does not make every pod of a namespace look alike.
pub fn closest<I, S>(typed: &str, candidates: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut scored: Vec<(f64, String)> = candidates
        .into_iter()
        .map(Into::into)
        .filter(|c| c != typed)
        .map(|c| (score(typed, &c), c))
        .filter(|(s, _)| *s >= NEAR)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

fn score(typed: &str, candidate: &str) -> f64 {
    // Compare past the `a/b/` segments both share (`ns/`, `ns/deployment/`).
    let shared = typed
        .char_indices()
        .zip(candidate.chars())
        .take_while(|((_, a), b)| a == b)
        .filter(|((_, a), _)| *a == '/')
        .last()
        .map_or(0, |((i, _), _)| i + 1);
    strsim::jaro_winkler(&typed[shared..], &candidate[shared..])
}

/// ` (did you mean a, b or c?)`, or nothing without candidates.
pub fn did_you_mean(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => format!(" (did you mean {one}?)"),
        [init @ .., last] => format!(" (did you mean {} or {last}?)", init.join(", ")),
    }
}

/// `a, b, c` and `and N more` beyond `max`, for listing what exists when nothing is close.
pub fn some_of(names: &[String], max: usize) -> String {
    if names.len() <= max {
        return names.join(", ");
    }
    format!("{}, and {} more", names[..max].join(", "), names.len() - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn offers_the_near_names_best_first() {
        let pods = names(&["shop/frontend", "shop/backend", "shop/db-0", "data/frontend"]);
        assert_eq!(closest("shop/fronted", pods.clone()), ["shop/frontend"]);
        assert_eq!(closest("shop/backedn", pods.clone()), ["shop/backend"]);
        assert!(closest("shop/zzz", pods.clone()).is_empty(), "nothing near");
        assert_eq!(closest("shp", names(&["shop", "data", "kube-system"])), ["shop"]);
        assert!(closest("shop/frontend", pods).iter().all(|n| n != "shop/frontend"), "never itself");
    }

    #[test]
    fn a_shared_namespace_does_not_make_names_alike() {
        // Whole strings would score these above 0.8 on the long shared prefix alone.
        let pods = names(&["a-very-long-namespace/api", "a-very-long-namespace/web"]);
        assert!(closest("a-very-long-namespace/db", pods).is_empty());
    }

    #[test]
    fn reads_as_a_sentence() {
        assert_eq!(did_you_mean(&[]), "");
        assert_eq!(did_you_mean(&names(&["a"])), " (did you mean a?)");
        assert_eq!(did_you_mean(&names(&["a", "b", "c"])), " (did you mean a, b or c?)");
        assert_eq!(some_of(&names(&["a", "b", "c"]), 2), "a, b, and 1 more");
    }
}
