//! The flow log: new connections from the table's flow sets, each written once while the set
//! holds it (an hour since it was last seen), with the engine's verdict and deciding rules.

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use palisade_core::cluster::Cluster;
use palisade_core::port::Protocol;
use palisade_core::verdict::{decide, describe, Connection, Side};
use palisade_generate::flow::FlowRecord;
use palisade_nft::script;

use crate::{log, Mode};

pub struct FlowLog {
    out: Box<dyn std::io::Write>,
    written: std::collections::HashSet<script::SeenFlow>,
}

impl FlowLog {
    pub fn open(path: &Path) -> std::io::Result<FlowLog> {
        let out: Box<dyn std::io::Write> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        };
        Ok(FlowLog { out, written: Default::default() })
    }

    pub fn poll(&mut self, cluster: &Cluster, netns: Option<&str>, mode: Mode) {
        let seen = match script::flows(netns) {
            Ok(s) => s,
            Err(e) => return log(&format!("cannot read flows: {e}")),
        };
        // Remember only what the kernel still holds: bounded by the sets' size, and a connection
        // seen again after its element timed out is logged again.
        let held: std::collections::HashSet<&script::SeenFlow> = seen.iter().collect();
        self.written.retain(|f| held.contains(f));
        for f in seen {
            if self.written.contains(&f) {
                continue;
            }
            let line = serde_json::to_string(&record(cluster, &f, mode)).expect("serializable");
            if writeln!(self.out, "{line}").and_then(|_| self.out.flush()).is_err() {
                return log("cannot write the flow log");
            }
            self.written.insert(f);
        }
    }
}

fn record(cluster: &Cluster, f: &script::SeenFlow, mode: Mode) -> FlowRecord {
    // The flow sets only note TCP, UDP and SCTP.
    let protocol = Protocol::from_number(f.protocol).unwrap_or(Protocol::TCP);
    let (src, dst) = (Side::ip(cluster, f.src), Side::ip(cluster, f.dst));
    let decision = decide(cluster, &Connection::new(src, dst, f.port, protocol));
    let time = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    FlowRecord {
        time,
        src: describe(cluster, &src),
        dst: describe(cluster, &dst),
        src_ip: f.src.to_string(),
        dst_ip: f.dst.to_string(),
        port: f.port,
        protocol,
        verdict: decision.verdict.as_str().to_string(),
        mode: if mode == Mode::Audit { "audit" } else { "enforce" }.to_string(),
        decided_by: decision.trace.iter().filter_map(palisade_review::graph::deciding_rule).collect(),
    }
}
