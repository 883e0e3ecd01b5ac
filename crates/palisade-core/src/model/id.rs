//! Ids of the things a cluster holds: a position in its collection, typed so that a pod's id
//! is never taken for a namespace's. `.index()` gives the position for slices and bitsets;
//! the collections of a cluster are indexed by their id directly (the items' modules say so
//! with [`indexed_by`]).

use serde::Serialize;

macro_rules! ids {
    ($($(#[$doc:meta])* $id:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub struct $id(pub u32);

        impl $id {
            /// The id of the item at position `i`.
            pub fn new(i: usize) -> $id {
                $id(u32::try_from(i).expect("fewer than 2^32 items"))
            }
            /// Its position in its collection (and in bitsets over it).
            pub fn index(self) -> usize {
                self.0 as usize
            }
            /// The ids of a collection of `n` items, in order.
            pub fn all(n: usize) -> impl DoubleEndedIterator<Item = $id> + ExactSizeIterator + Clone {
                (0..n).map($id::new)
            }
        }
    )*};
}

/// Lets slices and vectors of the items be indexed by their id: `cluster.pods[pod]`.
macro_rules! indexed_by {
    ($($id:ty => $($item:ty),+;)*) => {$($(
        impl std::ops::Index<$id> for [$item] {
            type Output = $item;
            fn index(&self, id: $id) -> &$item {
                &self[id.index()]
            }
        }
        impl std::ops::IndexMut<$id> for [$item] {
            fn index_mut(&mut self, id: $id) -> &mut $item {
                &mut self[id.index()]
            }
        }
        impl std::ops::Index<$id> for Vec<$item> {
            type Output = $item;
            fn index(&self, id: $id) -> &$item {
                &self[id.index()]
            }
        }
        impl std::ops::IndexMut<$id> for Vec<$item> {
            fn index_mut(&mut self, id: $id) -> &mut $item {
                &mut self[id.index()]
            }
        }
    )+)*};
}
pub(crate) use indexed_by;

ids! {
    /// A pod (or a workload's template pod standing for its replicas).
    PodId;
    /// A namespace.
    NsId;
    /// A node.
    NodeId;
    /// A Service.
    ServiceId;
    /// A policy: its place in evaluation order (it moves when policies come or go).
    PolicyId;
    /// A Calico tier; `cluster::DEFAULT_TIER` is the default one.
    TierId;
    /// A Calico host endpoint.
    HostId;
    /// A Calico NetworkSet or GlobalNetworkSet.
    NetSetId;
}
