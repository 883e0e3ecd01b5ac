//! `palisade matrix --all-ports`: the connectivity map, every pair with every port it may use.

use palisade_core::cluster::Cluster;
use palisade_review::map::{text, Map};

use crate::matrix::Output;

/// Prints the map of a loaded cluster (with pods) in the chosen form.
pub fn run(cluster: &Cluster, output: Output) -> u8 {
    let map = Map::compute(cluster);
    match output {
        Output::Table => crate::emit(&text::render(&map, cluster)),
        Output::Json => {
            crate::emit(&(serde_json::to_string_pretty(&map.to_json(cluster)).expect("serializable") + "\n"))
        }
        Output::Csv => crate::emit(&map.to_csv(cluster)),
    }
    0
}
