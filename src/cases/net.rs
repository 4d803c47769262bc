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
use std::sync::OnceLock;

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The network runtime, built on first use (an error says why it could not be).
pub fn runtime() -> Result<&'static Runtime, String> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("overread-net")
                .enable_all()
                .build()
                .map_err(|e| format!("the network runtime could not start: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Run `future` on the network runtime and wait for it on this thread (a background thread:
/// never the UI thread, never a task of the runtime itself).
pub fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
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
        let first = runtime().unwrap() as *const Runtime;
        assert_eq!(first, runtime().unwrap() as *const Runtime);
        let (tx, rx) = std::sync::mpsc::channel();
        spawn(async move {
            tx.send(std::thread::current().name().map(str::to_string))
                .unwrap();
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("overread-net"));
    }
}
