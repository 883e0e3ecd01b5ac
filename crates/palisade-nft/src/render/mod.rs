//! The two renderers of one IR value: [`text`] (`nft -f` input) and [`netlink`] (the
//! nf_tables batch the kernel is sent). `tests/netlink_vs_nft.rs` holds them to listing alike.

pub mod netlink;
pub mod text;
