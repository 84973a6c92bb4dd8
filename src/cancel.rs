//! A cancellation flag shared by every task of a run (Ctrl-C, SIGTERM, or a failed sibling),
//! and the process's one listener for those signals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Once};

use tokio::sync::Notify;

static SIGNALLED: AtomicBool = AtomicBool::new(false);
static SIGNAL: LazyLock<Notify> = LazyLock::new(Notify::new);
static LISTEN: Once = Once::new();

/// Starts listening for Ctrl-C and SIGTERM for the rest of the process (once, on the current
/// runtime). From then on a signal no longer kills the process: it sets [`signalled`] and
/// cancels every [`Cancel`] that listens, and a question being asked returns "interrupted".
/// Outside a runtime it does nothing (the default handling stays).
pub fn listen_for_signals() {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    LISTEN.call_once(|| {
        // The handlers are installed here, before the caller goes on: a signal that arrives
        // while the listening task has not yet run is still caught.
        let _guard = rt.enter();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                rt.spawn(async move {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                    raise();
                });
                return;
            }
        }
        rt.spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                raise();
            }
        });
    });
}

fn raise() {
    SIGNALLED.store(true, Ordering::SeqCst);
    SIGNAL.notify_waiters();
}

/// True once Ctrl-C or SIGTERM arrived (after [`listen_for_signals`]).
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

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

    /// Cancels on Ctrl-C or SIGTERM.
    pub fn on_signals(&self) {
        listen_for_signals();
        let c = self.clone();
        tokio::spawn(async move {
            loop {
                let notified = SIGNAL.notified();
                if signalled() {
                    c.cancel();
                    return;
                }
                notified.await;
            }
        });
    }
}
