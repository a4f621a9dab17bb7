//! SIGINT/SIGTERM handling. The first signal asks the pipeline to finish the transaction in flight
//! and stop (exit 0). If that takes longer than [`STOP_GRACE`] (e.g. the cluster is unreachable and
//! a commit cannot complete), or on a second signal, the process exits at once with 128 + the signal
//! number, as shells and orchestrators expect of a forced stop. An open transaction is then aborted
//! by the broker after `transaction.timeout.ms`, or at once by the next instance with the same id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long a requested stop may take before it is forced. Below Kubernetes' default termination
/// grace period (30 s), so the process ends on its own terms before the SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// Installs the handlers and returns the flag the pipeline watches.
pub fn install() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                if flag.swap(true, Ordering::SeqCst) {
                    force_exit(signal, &format!("second {name}: stopping at once"));
                }
                log::info!(
                    "{name}: finishing the transaction in flight, then stopping (forced after \
                     {STOP_GRACE:?} or on a second signal)"
                );
                std::thread::spawn(move || {
                    std::thread::sleep(STOP_GRACE);
                    force_exit(
                        signal,
                        &format!(
                            "the stop requested by {name} did not finish within {STOP_GRACE:?} \
                             (is the Kafka cluster reachable?): stopping at once"
                        ),
                    );
                });
            }
        })?;
    Ok(stop)
}

fn force_exit(signal: i32, why: &str) -> ! {
    // Not through `log`: the reason must reach stderr whatever RUST_LOG says.
    eprintln!(
        "txform: {why}; an open transaction is aborted by the broker after transaction.timeout.ms, \
         or at once by the next instance with this id"
    );
    std::process::exit(128 + signal)
}
