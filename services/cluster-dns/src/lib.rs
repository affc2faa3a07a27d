//! The cluster DNS add-on (the role CoreDNS plays upstream): watches
//! Services and EndpointSlices and answers the Kubernetes DNS-Based Service
//! Discovery schema for the cluster domain over UDP and TCP; every other
//! name is forwarded to the upstream resolvers.
#![forbid(unsafe_code)]

pub mod app;
pub mod forward;
pub mod options;
pub mod server;
pub mod zone;
