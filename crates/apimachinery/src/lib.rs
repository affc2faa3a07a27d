//! Kubernetes API machinery shared by every service: typed API errors
//! (`metav1.Status`), label and field selectors, patches and helpers over
//! objects held as JSON values. No IO lives here.
#![forbid(unsafe_code)]

pub mod duration;
pub mod patch;
pub mod quantity;
pub mod selector;
pub mod status;
pub mod validation;
