//! MCP inspection: strict JSON-RPC parsing of every client→server message.

pub mod answer;
pub mod era;
pub mod inspect;
pub mod jsonrpc;
pub mod list;
pub mod mirror;
pub mod session;
pub mod sse;
// Shared with the credentials stage; re-exported where inspection first used it.
pub use crate::strict_json;

pub use inspect::{InspectLimits, InspectStage, MirrorCheck};
pub use jsonrpc::{InspectError, parse_body};
pub use mirror::{ParamMirrors, Unverified};
pub use session::{SessionOptions, SessionStage};
