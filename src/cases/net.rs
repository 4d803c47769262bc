//! The workstation's one tokio runtime for network work (DESIGN.md: rayon for CPU work, one
//! tokio runtime for network; the frame loop never blocks). The worklist's requests, a signed
//! report's first sending, DICOMweb retrieval and the outbox's sender all run on it: the UI
//! thread spawns onto it and reads the answers from channels, the scan and signing threads
//! wait on it with [`block_on`].
//!
//! Built on first use, two worker threads named `overread-net` (the work is waiting on
//! sockets; decoding and hashing stay on their own threads). It lives as long as the process,
//! so a connection a client keeps for the next request is never left on a runtime that is gone.

use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Held while the runtime is built: one is built, and a failure is tried again next time.
static BUILDING: Mutex<()> = Mutex::new(());

/// The network runtime, built on first use (an error says why it could not be; the next call
/// tries again).
pub fn runtime() -> Result<&'static Runtime, String> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let _building = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("overread-net")
        .enable_all()
        .build()
        .map_err(|e| format!("the network runtime could not start: {e}"))?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// Run `future` on the network runtime and wait for it on this thread (a background thread:
/// never the UI thread; from inside a runtime's task it is refused, not a panic).
pub fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err("a network wait from inside an async task (a bug: nothing was sent)".into());
    }
    Ok(runtime()?.block_on(future))
}

/// Start `future` on the network runtime without waiting (the UI thread's requests: the
/// answer comes back through a channel the future holds). `Err`: the runtime could not start.
pub fn spawn<F>(future: F) -> Result<(), String>
where
    F: Future<Output = ()> + Send + 'static,
{
    runtime()?.spawn(future);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One runtime for the process: spawned and waited-on work lands on the same named
    /// threads, however many requests came before.
    #[test]
    fn every_request_runs_on_the_one_runtime() {
        let names: Vec<String> = (0..4)
            .map(|_| {
                block_on(async {
                    tokio::task::spawn(async {
                        std::thread::current()
                            .name()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .await
                    .unwrap()
                })
                .unwrap()
            })
            .collect();
        assert!(names.iter().all(|n| n == "overread-net"), "{names:?}");
        // Waiting from inside one of its own tasks would panic: refused instead.
        let inside = runtime()
            .unwrap()
            .block_on(async { tokio::spawn(async { block_on(async {}).is_err() }).await });
        assert!(inside.unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        spawn(async move {
            tx.send(std::thread::current().name().map(str::to_string))
                .unwrap();
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("overread-net"));
    }
}
