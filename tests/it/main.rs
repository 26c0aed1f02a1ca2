//! Integration tests: the real binary, real processes, real files, real
//! SQLite, real HTTP on loopback.

mod helper;

mod api;
mod browser;
mod check;
mod cluster;
mod crash;
mod daemon;
mod durability;
mod examples;
mod exec;
mod flow_daemon;
mod flows;
mod fuzz;
mod hostile;
mod http;
mod import;
mod init;
mod layers;
mod live;
mod memory;
mod next;
mod operator;
mod policy;
mod postgres;
mod report_variants;
mod retention;
mod routing;
mod schedule;
mod secrets;
mod state;
mod store_backends;
mod triggers;
mod truthful;
mod users;
