//! Observed connections, from Palisade's own flow log, Cilium Hubble, or a plain CSV.

use palisade_core::port::Protocol;
use serde::{Deserialize, Serialize};

/// One line of the agent's flow log: a connection the node saw start.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowRecord {
    /// Seconds since the Unix epoch when the agent noticed it.
    pub time: u64,
    /// `namespace/pod`, `node NAME`, or the address.
    pub src: String,
    pub dst: String,
    pub src_ip: String,
    pub dst_ip: String,
    pub port: u16,
    pub protocol: Protocol,
    /// What policy says: `allow` or `deny` (in audit mode a denied one still went through).
    pub verdict: String,
    pub mode: String,
    /// The deciding rule on each side.
    pub decided_by: Vec<String>,
}

/// A connection to allow: endpoints as `namespace/pod` or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub src: String,
    pub dst: String,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct FlowError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Flows read from one file.
#[derive(Debug, Default)]
pub struct Parsed {
    pub flows: Vec<Flow>,
    /// Attempts that enforcing policy dropped (Palisade `enforce`/`deny`, Hubble `DROPPED`):
    /// not learned, since nothing shows the application needs them.
    pub blocked: usize,
}

/// Reads flows from any of the three formats, told apart by their content: JSON lines with
/// `src`/`dst` (Palisade), JSON lines with `flow` or `IP` (Hubble), else CSV `src,dst,port,protocol`.
pub fn parse(file: &str, text: &str) -> Result<Parsed, FlowError> {
    let mut out = Parsed::default();
    let err = |line: usize, message: String| FlowError { file: file.to_string(), line, message };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(i + 1, format!("not JSON: {e}")))?;
            if v.get("src").is_some() {
                let r: FlowRecord =
                    serde_json::from_value(v).map_err(|e| err(i + 1, format!("not a Palisade flow record: {e}")))?;
                if r.mode == "enforce" && r.verdict == "deny" {
                    out.blocked += 1;
                    continue;
                }
                out.flows.push(Flow { src: r.src_ip, dst: r.dst_ip, port: r.port, protocol: r.protocol });
            } else if v.get("flow").unwrap_or(&v)["verdict"] == "DROPPED" {
                out.blocked += 1;
            } else {
                out.flows.extend(hubble(&v).map_err(|m| err(i + 1, m.to_string()))?);
            }
        } else if let Some(f) = csv(line).map_err(|m| err(i + 1, m.to_string()))? {
            out.flows.push(f);
        }
    }
    Ok(out)
}

/// What is wrong with one line of a flow file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum LineError {
    #[error("expected src,dst,port,protocol, found {0:?}")]
    Fields(String),
    #[error("port {0:?} is not a number 1-65535")]
    Port(String),
    #[error("protocol {0:?}: TCP, UDP or SCTP")]
    Protocol(String),
    #[error("Hubble flow without IP.source/destination")]
    HubbleAddresses,
    #[error("Hubble flow without l4 destination_port")]
    HubblePort,
}

/// `src,dst,port,protocol`; the header line is skipped.
fn csv(line: &str) -> Result<Option<Flow>, LineError> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.first() == Some(&"src") {
        return Ok(None);
    }
    let [src, dst, port, rest @ ..] = fields.as_slice() else {
        return Err(LineError::Fields(line.to_string()));
    };
    let port: u16 = port.parse().map_err(|_| LineError::Port(port.to_string()))?;
    let protocol = match rest.first() {
        None | Some(&"") => Protocol::TCP,
        Some(p) => Protocol::from_api(&p.to_ascii_uppercase()).ok_or_else(|| LineError::Protocol(p.to_string()))?,
    };
    Ok(Some(Flow { src: src.to_string(), dst: dst.to_string(), port, protocol }))
}

/// One `hubble observe -o json` line (with or without the `flow` wrapper). Replies and
/// non-initial TCP segments are skipped: they are the same connection seen backwards.
fn hubble(v: &serde_json::Value) -> Result<Vec<Flow>, LineError> {
    let f = v.get("flow").unwrap_or(v);
    if f["is_reply"].as_bool() == Some(true) || f.get("IP").is_none() {
        return Ok(Vec::new());
    }
    let (src, dst) = (f["IP"]["source"].as_str(), f["IP"]["destination"].as_str());
    let (Some(src), Some(dst)) = (src, dst) else { return Err(LineError::HubbleAddresses) };
    let l4 = &f["l4"];
    let (protocol, layer) = if l4.get("TCP").is_some() {
        (Protocol::TCP, &l4["TCP"])
    } else if l4.get("UDP").is_some() {
        (Protocol::UDP, &l4["UDP"])
    } else if l4.get("SCTP").is_some() {
        (Protocol::SCTP, &l4["SCTP"])
    } else {
        return Ok(Vec::new());
    };
    if protocol == Protocol::TCP {
        let flags = &layer["flags"];
        if flags.is_object() && !(flags["SYN"].as_bool() == Some(true) && flags["ACK"].as_bool() != Some(true)) {
            return Ok(Vec::new());
        }
    }
    let port = layer["destination_port"].as_u64().and_then(|p| u16::try_from(p).ok()).ok_or(LineError::HubblePort)?;
    // Hubble names pods; prefer them to addresses (a pod IP may have been reused since).
    let name = |e: &serde_json::Value, ip: &str| match (e["namespace"].as_str(), e["pod_name"].as_str()) {
        (Some(ns), Some(pod)) if !ns.is_empty() && !pod.is_empty() => format!("{ns}/{pod}"),
        _ => ip.to_string(),
    };
    Ok(vec![Flow { src: name(&f["source"], src), dst: name(&f["destination"], dst), port, protocol }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_read_alike() {
        let csv = "src,dst,port,protocol\nx/a,y/b,80,TCP\n10.0.0.1,y/b,53,udp\n";
        let hubble = r#"{"flow":{"IP":{"source":"10.244.1.10","destination":"10.244.2.10"},"l4":{"TCP":{"source_port":40000,"destination_port":80,"flags":{"SYN":true}}},"source":{"namespace":"x","pod_name":"a"},"destination":{"namespace":"y","pod_name":"b"},"is_reply":false}}
{"flow":{"IP":{"source":"10.244.2.10","destination":"10.244.1.10"},"l4":{"TCP":{"source_port":80,"destination_port":40000,"flags":{"SYN":true,"ACK":true}}},"is_reply":true}}
{"flow":{"IP":{"source":"10.244.1.10","destination":"10.244.2.10"},"l4":{"TCP":{"destination_port":80,"flags":{"ACK":true,"PSH":true}}}}}"#;
        let own = r#"{"time":1,"src":"x/a","dst":"y/b","src_ip":"10.244.1.10","dst_ip":"10.244.2.10","port":80,"protocol":"TCP","verdict":"allow","mode":"audit","decided_by":[]}"#;
        let f = parse("c.csv", csv).unwrap().flows;
        assert_eq!(f.len(), 2);
        assert_eq!(f[1], Flow { src: "10.0.0.1".into(), dst: "y/b".into(), port: 53, protocol: Protocol::UDP });
        let h = parse("h.json", hubble).unwrap().flows;
        assert_eq!(h, vec![Flow { src: "x/a".into(), dst: "y/b".into(), port: 80, protocol: Protocol::TCP }]);
        let p = parse("p.jsonl", own).unwrap().flows;
        assert_eq!(p[0].dst, "10.244.2.10");
        let blocked = own.replace("\"allow\",\"mode\":\"audit\"", "\"deny\",\"mode\":\"enforce\"");
        let b = parse("p.jsonl", &format!("{own}\n{blocked}")).unwrap();
        assert_eq!((b.flows.len(), b.blocked), (1, 1), "a dropped attempt is not learned");
        let audit_deny = own.replace("\"allow\"", "\"deny\"");
        assert_eq!(parse("p.jsonl", &audit_deny).unwrap().flows.len(), 1, "audit mode let it through: learned");
        let bad = parse("c.csv", "x/a,y/b,http,TCP\n").unwrap_err();
        assert_eq!(bad.line, 1);
        assert!(bad.to_string().contains("c.csv:1"));
    }
}
