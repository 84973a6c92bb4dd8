//! A cancellation flag shared by every task of a run (Ctrl-C, SIGTERM, or a failed sibling),
//! and the process's one listener for those signals.
//!
//! Stopping has two stages, so a run always ends: the first signal asks every step to stop at
//! its next safe point (a batch boundary); when the run has not ended [`GRACE`] later, or on a
//! second signal, the stop is *forced*: the runner drops whatever the step was waiting on
//! (a server that stopped answering, a stalled link), unlocks the source if it froze it,
//! journals the step `interrupted` and exits 5. And should even that not end the process
//! within [`LAST_RESORT`], the binary exits by itself with [`last_words`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{Error, Result};

static SIGNALLED: AtomicBool = AtomicBool::new(false);
static SIGNAL: LazyLock<Notify> = LazyLock::new(Notify::new);
static FORCED: AtomicBool = AtomicBool::new(false);
static SECOND_SIGNAL: AtomicBool = AtomicBool::new(false);
static FORCE: LazyLock<Notify> = LazyLock::new(Notify::new);
static LISTEN: Once = Once::new();
static LAST_WORDS: Mutex<Option<String>> = Mutex::new(None);

/// How long a run has, after the first Ctrl-C or SIGTERM, to stop at a safe point before the
/// stop is forced.
pub const GRACE: Duration = Duration::from_secs(10);

/// How long a forced stop has to unlock, journal and exit before the process exits anyway.
pub const LAST_RESORT: Duration = Duration::from_secs(10);

/// Starts listening for Ctrl-C and SIGTERM for the rest of the process (once, on the current
/// runtime). From then on a signal no longer kills the process: the first sets [`signalled`]
/// and cancels every [`Cancel`] that listens (a question being asked returns "interrupted");
/// a second, or [`GRACE`] without the process ending, forces the stop ([`forced`]).
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
                    loop {
                        tokio::select! {
                            _ = term.recv() => {},
                            _ = int.recv() => {},
                        }
                        on_signal();
                    }
                });
                return;
            }
        }
        rt.spawn(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                on_signal();
            }
        });
    });
}

/// The first signal asks, and forces after [`GRACE`]; any later one forces at once.
fn on_signal() {
    if signalled() {
        SECOND_SIGNAL.store(true, Ordering::SeqCst);
        force();
        return;
    }
    raise();
    tokio::spawn(async {
        tokio::time::sleep(GRACE).await;
        force();
    });
}

fn raise() {
    SIGNALLED.store(true, Ordering::SeqCst);
    SIGNAL.notify_waiters();
}

/// Forces the stop (see the module's documentation); the run's own paths take it from here.
pub fn force() {
    if !FORCED.swap(true, Ordering::SeqCst) {
        tracing::debug!("the stop is forced");
    }
    FORCE.notify_waiters();
}

/// True once the stop is forced.
pub fn forced() -> bool {
    FORCED.load(Ordering::SeqCst)
}

/// Why the stop was forced, for the message: a second signal, or the grace period.
pub fn forced_why() -> String {
    if SECOND_SIGNAL.load(Ordering::SeqCst) {
        "stopped at once on a second Ctrl-C/SIGTERM".into()
    } else {
        format!(
            "stopped at once: no safe point was reached within {}s of Ctrl-C/SIGTERM",
            GRACE.as_secs()
        )
    }
}

/// Resolves once the stop is forced.
pub async fn until_forced() {
    loop {
        let notified = FORCE.notified();
        if forced() {
            return;
        }
        notified.await;
    }
}

/// Runs `f` to its end, unless the stop is forced first: then `f` is dropped where it waits
/// and the answer is "interrupted" with `why`.
pub async fn or_forced<T>(f: impl Future<Output = Result<T>>, why: &str) -> Result<T> {
    tokio::select! {
        r = f => r,
        _ = until_forced() => Err(Error::interrupted(format!("{why}: {}", forced_why()))),
    }
}

/// What the process says if it must exit by itself after a forced stop (what to run next).
pub fn set_last_words(words: String) {
    if let Ok(mut w) = LAST_WORDS.lock() {
        *w = Some(words);
    }
}

/// The words set by [`set_last_words`], if any.
pub fn last_words() -> Option<String> {
    LAST_WORDS.lock().ok().and_then(|w| w.clone())
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
