//! Colour, only where a person reads it: `--color auto` (the default) colours a stream that is
//! a terminal when NO_COLOR is unset; `always` and `never` say so. Destructive lines are red,
//! warnings yellow, the diff green and red.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

const AUTO: u8 = 0;
const ALWAYS: u8 = 1;
const NEVER: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(NEVER);

/// Sets the mode from `--color` and NO_COLOR; returns whether stderr gets colour.
pub fn init(when: &str) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mode = match when {
        "always" => ALWAYS,
        "never" => NEVER,
        _ if no_color => NEVER,
        _ => AUTO,
    };
    MODE.store(mode, Ordering::Relaxed);
    on(Stream::Stderr)
}

/// Where text goes.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Standard output (the plan, reports).
    Stdout,
    /// Standard error (notices, questions, errors).
    Stderr,
}

/// True when text for `stream` is coloured.
pub fn on(stream: Stream) -> bool {
    match MODE.load(Ordering::Relaxed) {
        ALWAYS => true,
        AUTO => match stream {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        },
        _ => false,
    }
}

fn paint(stream: Stream, code: &str, s: &str) -> String {
    if on(stream) {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Irreversible: red and bold.
pub fn danger(stream: Stream, s: &str) -> String {
    paint(stream, "1;31", s)
}

/// A warning: yellow.
pub fn warn(stream: Stream, s: &str) -> String {
    paint(stream, "33", s)
}

/// Added in a diff: green.
pub fn added(stream: Stream, s: &str) -> String {
    paint(stream, "32", s)
}

/// Removed in a diff: red.
pub fn removed(stream: Stream, s: &str) -> String {
    paint(stream, "31", s)
}

/// Fine: green and bold.
pub fn good(stream: Stream, s: &str) -> String {
    paint(stream, "1;32", s)
}
