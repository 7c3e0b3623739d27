//! The demo: a built-in MCP tool server, and the whole stack in one process.

pub mod credentials;
pub mod pki;
pub mod server;
pub mod session;

pub use server::{DemoServer, DemoServerArgs, ResponseMode, run_demo_server};
pub use session::{DemoArgs, run_demo};
