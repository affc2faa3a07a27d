//! The streaming protocols of `kubectl exec/attach/port-forward/cp`:
//!
//! - [`spdy`]: SPDY/3.1 frames (zlib-compressed header blocks with the SPDY/3
//!   dictionary) and a client session, as the apiserver speaks to a kubelet
//!   and a kubelet's runtime streaming server (containerd's) for the
//!   `v4.channel.k8s.io` remote command protocol;
//! - [`channel`]: the `channel.k8s.io` WebSocket framing kubectl speaks
//!   (a channel byte before each binary message; v5 adds a close signal);
//! - [`pipe`]: copying between upgraded connections with an idle timeout.
#![forbid(unsafe_code)]

pub mod channel;
pub mod pipe;
pub mod spdy;
