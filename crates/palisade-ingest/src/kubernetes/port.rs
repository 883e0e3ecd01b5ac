//! Protocols and ports as the Kubernetes API writes them: validated like the API server.

use std::fmt;

use thiserror::Error;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_core::field::{FieldPath, Problems};
use palisade_core::port::Protocol;
use palisade_core::rule::{Port, PortWords};

/// Why a port name or number is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PortError {
    #[error("invalid port name {0:?}")]
    Name(String),
    #[error("port {0} is out of range")]
    OutOfRange(i32),
}

/// Which destination ports a NetworkPolicyPort admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// `port` omitted: every port of the protocol.
    Any,
    /// `port` (and `endPort`): an inclusive range.
    Range(u16, u16),
    /// A named port, resolved against the destination pod's container ports.
    Named(String),
}

/// One entry of a rule's `ports`, compiled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RulePort {
    pub protocol: Protocol,
    pub port: PortSpec,
}

impl RulePort {
    pub fn is_named(&self) -> bool {
        matches!(self.port, PortSpec::Named(_))
    }
    /// The port condition it lowers to (every port of the protocol when `port` is omitted).
    pub fn lowered(&self) -> Port {
        match &self.port {
            PortSpec::Any => Port::ALL,
            PortSpec::Range(a, b) => Port::Range(*a, *b),
            PortSpec::Named(n) => Port::Named(n.clone()),
        }
    }
    /// How traces quote it.
    pub fn words(&self) -> PortWords {
        PortWords { text: self.to_string(), protocol: self.protocol.number(), named: self.is_named() }
    }
}

impl fmt::Display for RulePort {
    /// `TCP/80`, `TCP/8000-8080`, `UDP/any`, `TCP/http`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortSpec::Any => write!(f, "{}/any", self.protocol),
            PortSpec::Range(a, b) if a == b => write!(f, "{}/{a}", self.protocol),
            PortSpec::Range(a, b) => write!(f, "{}/{a}-{b}", self.protocol),
            PortSpec::Named(n) => write!(f, "{}/{n}", self.protocol),
        }
    }
}

/// Parses an API protocol field (defaulting to TCP), reporting unknown values.
pub fn protocol(value: Option<&str>, path: &FieldPath, problems: &mut Problems) -> Protocol {
    match value {
        None => Protocol::TCP,
        Some(s) => Protocol::from_api(s).unwrap_or_else(|| {
            problems.error(
                path,
                format!("unsupported protocol {s:?}"),
                "the protocol must be one of TCP, UDP, SCTP (upper case); it defaults to TCP when omitted",
            );
            Protocol::TCP
        }),
    }
}

/// IANA service name, as the API server checks named ports: at most 15 characters of
/// `[a-z0-9-]`, at least one letter, no leading, trailing or doubled '-'.
pub fn check_port_name(s: &str) -> Result<(), PortError> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(PortError::Name(s.to_string()))
    }
}

const PORT_NAME_HELP: &str = "a named port is at most 15 characters of a-z, 0-9 and '-', with at least one letter and no leading, trailing or doubled '-'; a number must be 1-65535 written without quotes";

/// Compiles `port`/`endPort` of a NetworkPolicyPort, with the API server's checks.
pub fn compile_port_spec(
    port: Option<&IntOrString>,
    end_port: Option<i32>,
    path: &FieldPath,
    problems: &mut Problems,
) -> PortSpec {
    let spec = match port {
        None => PortSpec::Any,
        Some(IntOrString::Int(n)) => match check_port_number(*n) {
            Ok(p) => PortSpec::Range(p, p),
            Err(e) => {
                problems.error(&path.key("port"), e, "a port number must be between 1 and 65535");
                PortSpec::Any
            }
        },
        Some(IntOrString::String(s)) => {
            if let Err(e) = check_port_name(s) {
                problems.error(&path.key("port"), e, PORT_NAME_HELP);
            }
            PortSpec::Named(s.clone())
        }
    };
    let Some(end) = end_port else { return spec };
    let end_path = path.key("endPort");
    match &spec {
        PortSpec::Range(p, _) => {
            let p = *p;
            if end < i32::from(p) || end > 65535 {
                problems.error(
                    &end_path,
                    format!("endPort {end} must be between port ({p}) and 65535"),
                    "endPort closes the range that starts at port; it must be >= port and <= 65535",
                );
                return spec;
            }
            PortSpec::Range(p, end as u16)
        }
        PortSpec::Named(n) => {
            problems.error(
                &end_path,
                format!("endPort may not be used with a named port ({n:?})"),
                "endPort needs a numeric port: write the range as port: <first> and endPort: <last>",
            );
            spec
        }
        PortSpec::Any => {
            if port.is_none() {
                problems.error(
                    &end_path,
                    "endPort requires port to be set",
                    "set port to the first number of the range, endPort to the last",
                );
            }
            spec
        }
    }
}

/// A port number as the API writes it (`int32`), when it is 1-65535.
pub fn check_port_number(n: i32) -> Result<u16, PortError> {
    u16::try_from(n).ok().filter(|&p| p > 0).ok_or(PortError::OutOfRange(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        assert!(check_port_name("serve-80-tcp").is_ok());
        assert!(check_port_name("80").is_err());
        assert!(check_port_name("a--b").is_err());
        assert!(check_port_name("abcdefghijklmnop").is_err());
        assert!(check_port_name("HTTP").is_err());
    }
}
