//! kube-proxy: watches Services, EndpointSlices and its Node, and programs
//! one nftables table of its own so that each Service's virtual addresses
//! load-balance to its endpoints. See [`ruleset`] for the table's design.

pub mod convert;
pub mod model;
pub mod nft;
pub mod options;
pub mod proxy;
pub mod ruleset;
pub mod syncer;
