//! The last stage and the composition: the upstream client, the guards in front of
//! inspection, the edge that answers, and the stack that puts them in order.

pub mod breaker;
pub mod edge;
pub mod guard;
pub mod headers;
pub mod host;
pub mod response;
pub mod stack;
pub mod upstream;

pub use stack::{StackConfig, build_stack};
