//! Label and field selectors, as sent in `?labelSelector=` / `?fieldSelector=`
//! and held in `metav1.LabelSelector` objects.

pub mod field;
pub mod label;

pub use field::{FieldSelector, FieldSelectorError};
pub use label::{LabelSelector, LabelSelectorError, Labels, Operator, Requirement};
