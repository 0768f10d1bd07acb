//! Plumbing every Shop service shares, written once so services write handlers, not loops:
//! configuration, telemetry, graceful shutdown, storage with a transactional outbox and an
//! inbox of applied events, the Kafka producer relay and consumer loop, and HTTP helpers.

pub mod auth;
pub mod config;
pub mod consumer;
pub mod db;
pub mod host;
pub mod http;
pub mod inbox;
pub mod kafka;
pub mod metrics;
pub mod outbox;
pub mod ports;
pub mod retry;
pub mod secrets;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
pub mod transactional;

pub use shutdown::Shutdown;
