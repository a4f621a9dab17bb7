//! Injecting the faults of a plan: instance crashes and clean stops with restarts, broker crashes
//! with restarts, instances leaving and joining the group.

use std::time::Instant;

use anyhow::{Context, Result};
use txform_tests::describe_status;

use crate::broker::Broker;
use crate::fleet::Fleet;
use crate::profile::{Event, Signal};

/// What injecting a fault did.
#[derive(Debug, Clone)]
pub struct Injected {
    /// When the fault hit (the signal sent, the broker killed): recovery is measured from here.
    pub at: Instant,
    pub note: String,
}

/// Counters of what was done to the system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub broker_restarts: u32,
}

/// Injects `event`. Returns once the fault has been applied (and, for a restart, the process is
/// running again); recovery is watched by the caller.
pub fn inject(
    event: &Event,
    fleet: &mut Fleet,
    broker: &mut Broker,
    counts: &mut Counts,
) -> Result<Injected> {
    match *event {
        Event::Bounce { instance, signal } => {
            let id = instance.to_string();
            let at = Instant::now();
            let status = fleet
                .stop(&id, signal)
                .with_context(|| format!("stop instance {id}"))?;
            let stopped = at.elapsed();
            fleet
                .start(&id)
                .with_context(|| format!("restart instance {id}"))?;
            Ok(Injected {
                at,
                note: format!(
                    "{} {:.1}s after {}; restarted",
                    describe_status(&status),
                    stopped.as_secs_f64(),
                    signal.name()
                ),
            })
        }
        Event::BrokerKill => {
            broker.kill().context("kill the broker")?;
            // From the moment the process is gone: `kafka.sh kill` takes a moment to find it, and a
            // commit completed meanwhile is no recovery.
            let at = Instant::now();
            broker
                .start()
                .context("restart the broker after killing it")?;
            counts.broker_restarts += 1;
            Ok(Injected {
                at,
                note: format!(
                    "broker down {:.1}s, until serving again",
                    at.elapsed().as_secs_f64()
                ),
            })
        }
        Event::Leave { instance } => {
            let id = instance.to_string();
            let at = Instant::now();
            let status = fleet
                .stop(&id, Signal::Term)
                .with_context(|| format!("stop instance {id}"))?;
            Ok(Injected {
                at,
                note: format!(
                    "{} after {:.1}s",
                    describe_status(&status),
                    at.elapsed().as_secs_f64()
                ),
            })
        }
        Event::Join { instance } => {
            let id = instance.to_string();
            let at = Instant::now();
            fleet
                .start(&id)
                .with_context(|| format!("start instance {id}"))?;
            Ok(Injected {
                at,
                note: "started".to_string(),
            })
        }
    }
}
