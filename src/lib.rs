//! overnight: a batch job runner that replaces crontab for overnight work.
//!
//! The path of a run (DESIGN §3): [`config`] → [`schedule`] → dispatch
//! ([`daemon`]) → execute ([`exec`]) → events ([`event`]) → sinks: the
//! router ([`route`]), the capture file ([`capture`]), the store
//! ([`store`]) — and the report ([`report`]) folded from the same events.
//! [`runner`] holds that path for one run; [`cli`] is the face.

pub mod account;
pub mod capture;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod event;
pub mod exec;
pub mod exit;
pub mod fence;
pub mod flow;
pub mod inflight;
pub mod live;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod report;
pub mod route;
pub mod runner;
pub mod schedule;
pub mod state;
pub mod status;
pub mod store;

pub mod zone;
