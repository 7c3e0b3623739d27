//! mcp-pep: a policy-enforcing reverse proxy for the Model Context Protocol.
//!
//! The request path is one module per stage, dependencies pointing one way:
//!
//! ```text
//! listener → identity → auth (credentials) → mcp (inspection) → policy → proxy (upstream)
//! ```
//!
//! `context` holds the types the stages hand each other as request extensions; it, and
//! `error`, `body`, `stage`, `state` and `strict_json`, import no stage. `proxy::stack` is the one
//! place where the stages are composed. `inject` is not a stage: it puts the sidecar into
//! Kubernetes workloads (`mcp-pep inject`, `mcp-pep webhook`).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// A `Rejection` is built once per refused request and carries the whole answer; its
// size on that path does not matter, and boxing it would cost every stage a `Box`.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod context;
pub mod demo;
pub mod error;
pub mod identity;
pub mod inject;
pub mod limits;
pub mod listener;
pub mod mcp;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod stage;
pub mod state;
pub mod strict_json;
