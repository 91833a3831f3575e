//! The per-scale-set listener: holds the Actions service message session, long-polls for jobs,
//! acquires them, and sets the EphemeralRunnerSet's replicas (ARC's `ghalistener`, compatible
//! with its config file and its patches, but resilient where ARC's exits).
//!
//! The binary is a thin wrapper around [`app::main_exit_code`].

pub mod app;
pub mod bounds;
pub mod config;
pub mod health;
pub mod kube;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod scaler;
pub mod service;

pub use config::{ConfigError, ListenerConfig};
pub use listener::{Listener, ListenerError, LoopSettings};
