//! Property: for random clusters and policies, the per-connection verdict (`check`) and the
//! bitset matrix decide every pod pair the same way. Clusters have nodes, pods scheduled to
//! them (or to none), host-network pods on a node's address or their own, and workloads with
//! no Pod objects standing for their replicas (Deployments) or for a pod on every node
//! (DaemonSets, on the host network or not).

use std::sync::Arc;

use palisade_core::field::Nowhere;
use palisade_core::index::Index;
use palisade_core::port::Protocol;
use palisade_core::verdict::{decide, Connection, Side, Verdict};
use palisade_ingest::calico::convert::{to_calico, to_kubernetes};
use palisade_ingest::{build, BuildOptions, Input, Object};
use proptest::prelude::*;

mod scenario;
use scenario::{scenario, PORTS};

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
    #[test]
    fn check_and_matrix_decide_every_pair_alike(objects in scenario()) {
        let inputs: Vec<Input> = objects.into_iter().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect();
        let cluster = match build(&inputs, &BuildOptions::default()) {
            Ok(c) => c,
            // Generated sets can be invalid (e.g. named port with endPort is never generated, but a
            // port range past 65535 is not either); any error would withhold every verdict.
            Err(problems) => { prop_assert!(false, "generated input did not build: {:?}", problems.iter().map(|p| &p.message).collect::<Vec<_>>()); unreachable!() }
        };
        let mut index = Index::new(&cluster);
        for &port in &PORTS {
            for protocol in Protocol::ALL {
                let m = index.matrix(port, protocol);
                for s in cluster.pod_ids() {
                    for d in cluster.pod_ids() {
                        let conn = Connection::new(Side::pod(&cluster, s), Side::pod(&cluster, d), port, protocol);
                        let checked = decide(&cluster, &conn).verdict == Verdict::Allow;
                        prop_assert_eq!(m.allowed(s, d), checked, "{} -> {} {}/{}", cluster.pod_key(s), cluster.pod_key(d), protocol, port);
                    }
                }
            }
        }
    }

    /// A Kubernetes policy and its Calico conversion decide every connection alike, and the
    /// converted set goes back to Kubernetes unchanged in meaning.
    #[test]
    fn kubernetes_policies_and_their_calico_conversion_agree(objects in scenario()) {
        let to_inputs = |objs: Vec<Object>| -> Vec<Input> {
            objs.into_iter().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect()
        };
        let calico: Vec<Object> = objects
            .iter()
            .map(|o| match o {
                Object::NetworkPolicy(np) => Object::CalicoNetworkPolicy(to_calico(np)),
                other => other.clone(),
            })
            .collect();
        let back: Vec<Object> = calico
            .iter()
            .map(|o| match o {
                Object::CalicoNetworkPolicy(p) => Object::NetworkPolicy(to_kubernetes(p).expect("a converted Kubernetes policy converts back")),
                other => other.clone(),
            })
            .collect();
        let build_all = |objs: Vec<Object>| build(&to_inputs(objs), &BuildOptions::default()).map_err(|p| p.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>());
        let (k8s, cal, round) = (build_all(objects), build_all(calico), build_all(back));
        prop_assert!(k8s.is_ok() && cal.is_ok() && round.is_ok(), "did not build: {:?} {:?} {:?}", k8s.as_ref().err(), cal.as_ref().err(), round.as_ref().err());
        let (k8s, cal, round) = (k8s.unwrap(), cal.unwrap(), round.unwrap());
        let (mut a, mut b, mut c) = (Index::new(&k8s), Index::new(&cal), Index::new(&round));
        for &port in &PORTS {
            for protocol in Protocol::ALL {
                let (ma, mb, mc) = (a.matrix(port, protocol), b.matrix(port, protocol), c.matrix(port, protocol));
                for s in k8s.pod_ids() {
                    for d in k8s.pod_ids() {
                        prop_assert_eq!(ma.allowed(s, d), mb.allowed(s, d), "calico: {} -> {} {}/{}", k8s.pod_key(s), k8s.pod_key(d), protocol, port);
                        prop_assert_eq!(ma.allowed(s, d), mc.allowed(s, d), "round trip: {} -> {} {}/{}", k8s.pod_key(s), k8s.pod_key(d), protocol, port);
                        let conn = Connection::new(Side::pod(&cal, s), Side::pod(&cal, d), port, protocol);
                        prop_assert_eq!(mb.allowed(s, d), decide(&cal, &conn).verdict == Verdict::Allow, "calico check vs matrix: {} -> {}", cal.pod_key(s), cal.pod_key(d));
                    }
                }
            }
        }
    }
}
