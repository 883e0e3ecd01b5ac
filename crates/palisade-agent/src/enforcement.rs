//! What the two sources of the agent (a directory, the API server) share to enforce: the
//! build and compile options from its [`Config`], the claim on the network namespace with its
//! nf_tables, and the warnings about what the kernel cannot enforce.

use palisade_core::cluster::Cluster;
use palisade_ingest::BuildOptions;
use palisade_nft::owner::{Owner, OwnerError};
use palisade_nft::Options;

use crate::{log, Config, Mode, Refused};

/// How objects are built: manifests without a namespace take `--namespace`'s.
pub(crate) fn build_options(args: &Config) -> BuildOptions {
    BuildOptions { default_namespace: args.namespace.clone(), ..Default::default() }
}

/// How the table is compiled: `--node`'s pods, audit mode, flow sets for `--flow-log`.
pub(crate) fn compile_options(args: &Config) -> Options {
    Options {
        node: args.node.clone(),
        audit: args.mode == Mode::Audit,
        record_flows: args.flow_log.is_some(),
        ..Default::default()
    }
}

/// Claims the network namespace (one agent each) and opens its nf_tables.
pub(crate) fn claim(netns: Option<&str>) -> Result<(Owner, palisade_nft::kernel::Kernel), Refused> {
    let owner = match palisade_nft::owner::claim(netns) {
        Ok(o) => o,
        Err(OwnerError::Taken { pid, status }) => {
            log(&format!("refused: another palisade agent (pid {pid}) enforces this network namespace; its status:"));
            eprint!("{status}");
            return Err(Refused(format!("another palisade agent (pid {pid}) enforces this network namespace")));
        }
        Err(e) => {
            log(&format!("refused: {e}"));
            return Err(Refused(e.to_string()));
        }
    };
    let kernel = palisade_nft::kernel::Kernel::open(netns).map_err(|e| {
        log(&format!("cannot reach nf_tables: {e}"));
        Refused(format!("cannot reach nf_tables: {e}"))
    })?;
    Ok((owner, kernel))
}

/// Says, on every full compile, what the kernel cannot enforce (domainNames rules).
pub(crate) fn warn_unenforced(cluster: &Cluster) {
    for w in palisade_nft::unenforced::warnings(cluster) {
        log(&format!("warning: {w}"));
    }
}
