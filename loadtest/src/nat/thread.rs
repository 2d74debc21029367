//! Running async code inside another network namespace.
//!
//! The network namespace belongs to a thread, and a socket stays in the namespace it was made
//! in. So each peer runs on its own OS thread that first joins the namespace and then drives a
//! current-thread tokio runtime: every socket the peer's code opens (STUN, TURN, TCP) lives
//! behind its NAT, and the rest of the process is untouched.

use std::future::Future;

use nix::sched::{CloneFlags, setns};
use tokio::sync::oneshot;

/// Runs `task()` to completion on a new thread inside namespace `ns`.
pub(super) async fn in_namespace<F, Fut, T>(ns: &str, task: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("netns {ns}"))
        .spawn(move || {
            let outcome = (|| {
                let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {path}: {e}"))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("runtime: {e}"))?;
                Ok(runtime.block_on(task()))
            })();
            let _ = done.send(outcome);
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    result
        .await
        .map_err(|_| format!("the thread in {ns} panicked"))?
}
