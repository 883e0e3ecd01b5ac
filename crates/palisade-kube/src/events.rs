//! Events on the objects the agent refuses (`events.k8s.io/v1`, through kube-runtime's
//! `Recorder`: the first report of an object creates an Event, a repeat within six minutes
//! patches its series), so `kubectl describe` and `kubectl get events` show why an object is
//! not enforced as written. deploy/'s role grants exactly `create` and `patch` on these.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

use crate::decode::ObjectKey;

/// The `reportingController` of every Event the agent writes (a qualified name, as the API
/// server requires).
pub const CONTROLLER: &str = "palisade.dev/agent";
/// The Event's `reason` for an object that does not validate or does not build.
pub const REASON: &str = "Refused";
/// The Event's `action`: what the agent was doing with the object.
pub const ACTION: &str = "Enforce";
/// The API server's bound on `note` (1 kB).
const NOTE_MAX: usize = 1024;

/// One refused object to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub key: ObjectKey,
    /// The object's `metadata.uid` (kubectl describe finds Events by it).
    pub uid: Option<String>,
    /// What is wrong: field paths and messages.
    pub why: String,
    /// A last good version stays in force (else the object is left out).
    pub kept: bool,
}

impl Refusal {
    /// The Event's note: what the agent does about it, then why; at most 1 kB.
    pub fn note(&self) -> String {
        let what = if self.kept { "its last good version stays in force" } else { "left out" };
        let mut note = format!("not enforced as written ({what}): {}", self.why);
        if note.len() > NOTE_MAX {
            let mut cut = NOTE_MAX - 3;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        note
    }

    /// The object the Event is about.
    pub fn regarding(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.key.kind.api_version()),
            kind: Some(self.key.kind.kind.to_string()),
            namespace: self.key.namespace.clone(),
            name: Some(self.key.name.clone()),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }
}

/// Writes Events as one agent (`instance`: its node's name).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, instance: &str) -> Events {
        let reporter = Reporter { controller: CONTROLLER.into(), instance: Some(instance.into()) };
        Events { recorder: Recorder::new(client, reporter) }
    }

    /// A Warning Event on the refused object (cluster-scoped objects' Events go to `default`,
    /// as kube-runtime and kubectl place them). Errors are the API server's (a 403 when the
    /// role does not grant Events).
    pub async fn refused(&self, r: &Refusal) -> Result<(), kube::Error> {
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(r.note()),
            action: ACTION.into(),
            secondary: None,
        };
        self.recorder.publish(&event, &r.regarding()).await
    }
}
