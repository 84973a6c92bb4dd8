//! A cancellation flag shared by every task of a run (Ctrl-C, SIGTERM, or a failed sibling).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Cheap to clone; once cancelled, stays cancelled.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<(AtomicBool, Notify)>);

impl Cancel {
    /// A fresh, un-cancelled flag.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every task to stop at its next safe point.
    pub fn cancel(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        self.0.1.notify_waiters();
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Resolves when cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Cancels on Ctrl-C or SIGTERM (spawned once by the binary).
    pub fn on_signals(&self) {
        let c = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                let term = signal(SignalKind::terminate());
                let int = signal(SignalKind::interrupt());
                if let (Ok(mut term), Ok(mut int)) = (term, int) {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                    c.cancel();
                    return;
                }
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                c.cancel();
            }
        });
    }
}
