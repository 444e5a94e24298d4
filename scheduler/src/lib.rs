//! `skiff serve`: a durable job queue (SQLite), a REST API on a unix
//! socket, and a dispatcher that runs jobs in `runtime::pool` launchers.
//! The control plane is async (tokio, axum) and never calls libcontainer.

pub mod api;
pub mod claim;
pub mod client;
pub mod code;
pub mod code_fetch;
#[cfg(test)]
mod conformance_schedules;
pub mod db;
pub mod dispatch;
mod dispatch_conn;
pub mod error;
pub mod finish;
pub mod fleet;
pub mod hooks;
pub mod image_pull;
pub mod launchers;
pub mod metrics;
mod migrations;
pub mod queue;
pub mod queues;
mod records;
pub mod request;
pub mod schedules;
pub mod serve;
pub mod state;
mod submit;
pub mod turn;
pub mod volumes;
pub mod webhooks;

pub use error::{FieldError, QueueError};
pub use request::JobRequest;
pub use state::{Job, JobState};
