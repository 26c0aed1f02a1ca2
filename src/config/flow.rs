//! A flow of the jobs file (DESIGN §8): its steps and how it is started.
//! Read by [`super::read_flows`]; the steps' logic is in [`crate::flow`].

use std::sync::Arc;
use std::time::Duration;

use super::{CatchUp, Concurrency};
use crate::flow::Plan;
use crate::schedule::Schedule;
use crate::schedule::scheduler::Timing;
use crate::zone::Zone;

/// One flow of the jobs file.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Its name: `[A-Za-z0-9._-]+`, unique among the flows.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// When it starts by itself; `None`: by hand, the API or a trigger.
    pub schedule: Option<Schedule>,
    /// The zone its schedule is read in.
    pub timezone: Zone,
    /// Fires missed while the daemon was down.
    pub catch_up: CatchUp,
    /// A start while a run of it goes on: `skip` or `allow`.
    pub concurrency: Concurrency,
    /// Which hosts of a cluster may drive it (its steps run where the
    /// driving host is).
    pub placement: super::cluster::Placement,
    /// Its steps and how a run of it goes; kept with each run.
    pub plan: Arc<Plan>,
}

impl Flow {
    /// What the scheduler needs, for a flow with a clock schedule.
    pub fn timing(&self) -> Option<Timing> {
        let schedule = self.schedule.as_ref().filter(|s| !s.is_reboot())?;
        Some(Timing {
            schedule: schedule.clone(),
            delay: Duration::ZERO,
        })
    }
}
