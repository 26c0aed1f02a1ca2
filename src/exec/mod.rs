//! One attempt of a job: start it, read what it says, end it.
//!
//! An executor turns a job into [`RunEvent`](crate::event::RunEvent)
//! batches on a channel and returns how the work ended as an
//! [`Exit`](crate::report::Exit). The channel is bounded: when the sinks
//! fall behind, the executor stops reading and the job waits on its pipe,
//! so memory stays bounded whatever the job prints.

pub mod command;
pub mod lines;
pub mod protocol;

use tokio::sync::mpsc;

use crate::event::RunEvent;

/// Where an executor sends its events, a batch at a time.
pub type EventSender = mpsc::Sender<Vec<RunEvent>>;

/// How many batches may wait for the sinks.
pub const EVENT_BACKLOG: usize = 4;
