//! The strategy of kinds that need nothing beyond typed decoding.

use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Serialize};

use crate::registry::strategy::KindStrategy;

/// Typed decoding and generic metadata handling only.
pub struct Plain<T>(PhantomData<fn() -> T>);

impl<T> Default for Plain<T> {
    fn default() -> Self {
        Plain(PhantomData)
    }
}

impl<T: DeserializeOwned + Serialize + Send + 'static> KindStrategy for Plain<T> {
    type Object = T;
}
