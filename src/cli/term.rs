//! The terminal as the engine's operator: questions on stderr read from a TTY (`--yes`
//! answers them; without a TTY and without `--yes` the command refuses), notices, and
//! progress bars (drawn only on a terminal).

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::GlobalArgs;
use crate::cli::render;
use crate::deploy::DeployObserver;
use crate::engine::operator::{Operator, Progress, Typed};
use crate::engine::plan::model::Plan;
use crate::error::{Error, Result};
use crate::mongo::observe::Observer;
use crate::mongo::verify::VerifyReport;
use crate::world::World;

/// The operator at a terminal.
pub struct Terminal {
    yes: bool,
    json: bool,
    progress: bool,
}

impl Terminal {
    /// The terminal for one command: `yes` answers every question, `json` keeps stdout for
    /// the one JSON document.
    pub fn new(g: &GlobalArgs, yes: bool, json: bool) -> Terminal {
        Terminal {
            yes,
            json,
            progress: !g.no_progress && !g.quiet && std::io::stderr().is_terminal(),
        }
    }
}

/// Prompts on stderr and reads one line from a terminal; without a terminal, refuses. Ctrl-C
/// or SIGTERM while it waits returns "interrupted" at once (the line is read on a thread of its
/// own, so a blocked read never holds the answer back).
fn read_answer(question: &str, hint: &str, what: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::refused(format!(
            "{question} — this needs {what}, but there is no terminal to ask on; re-run with --yes to accept"
        )));
    }
    crate::cancel::listen_for_signals();
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} {hint} ");
    let _ = err.flush();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    loop {
        if crate::cancel::signalled() {
            let _ = writeln!(err);
            return Err(Error::interrupted("interrupted at the question"));
        }
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(read) => {
                return read
                    .map(|l| l.trim().to_string())
                    .map_err(|e| Error::io("reading the answer", e));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::other(
                    "the terminal closed while a question was asked",
                ));
            }
        }
    }
}

impl Operator for Terminal {
    fn confirm(&self, question: &str) -> Result<bool> {
        if self.yes {
            return Ok(true);
        }
        let answer = read_answer(question, "[y/N]", "a confirmation")?;
        Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
    }

    fn type_to_confirm(&self, question: &str, expected: &str) -> Result<Typed> {
        if self.yes {
            return Ok(Typed::Confirmed);
        }
        Ok(match read_answer(question, "", "an answer")?.trim() {
            "" => Typed::Nothing,
            t if t == expected => Typed::Confirmed,
            _ => Typed::Other,
        })
    }

    fn assumes_yes(&self) -> bool {
        self.yes
    }

    fn notice(&self, message: &str) {
        eprintln!("{message}");
    }

    fn error_line(&self, message: &str) {
        render::error_line(message);
    }

    fn danger(&self, message: &str) {
        eprintln!(
            "{}",
            crate::cli::style::danger(crate::cli::style::Stream::Stderr, message)
        );
    }

    fn show_plan(&self, plan: &Plan, world: &World, dry_run: bool) {
        if !self.json {
            let shown = if dry_run {
                render::plan::Shown::DryRun
            } else {
                render::plan::Shown::Migrate
            };
            print!("{}", render::plan::plan_text(plan, world, shown));
        }
    }

    fn show_verify(&self, report: &VerifyReport) {
        eprint!("{}", render::data::verify_text(report));
    }

    fn bars(&self, label: &str, total_docs: u64) -> Box<dyn Progress> {
        Box::new(Bars::new(total_docs, self.progress, label))
    }

    fn spinner(&self, label: &str) -> Box<dyn Progress> {
        Box::new(Spinner::new(self.progress, label))
    }
}

/// A bar style: `{name}` fitted to its column, the rate a whole number of documents a second.
fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&crate::units::rate(s.per_sec(), "docs"));
            },
        )
        .with_key(
            "done",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let total = s.len().unwrap_or(0);
                let _ = write!(
                    w,
                    "{}/{}",
                    crate::units::count(s.pos()),
                    crate::units::count(total)
                );
            },
        )
        .progress_chars("=> ")
}

/// Columns a collection's name gets in front of its bar.
const NAME_COLUMNS: usize = 28;

/// Progress bars for copy, sync and verify: one per collection in flight plus an overall bar.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars for `total_docs` documents; drawn only when `enabled`.
    pub fn new(total_docs: u64, enabled: bool, label: &str) -> Bars {
        let multi = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let overall = multi.add(ProgressBar::new(total_docs.max(1)));
        overall.set_style(bar_style(
            "{prefix} [{bar:30}] {done} docs  {rate}{msg}  eta {eta}",
        ));
        overall.set_prefix(crate::units::fit(label, NAME_COLUMNS));
        Bars {
            multi,
            overall,
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn done(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl DeployObserver for Bars {}

/// A step that stops early (an error, Ctrl-C) leaves no frozen bar behind.
impl Drop for Bars {
    fn drop(&mut self) {
        self.done();
    }
}

impl Observer for Bars {
    fn start(&self, ns: &str, estimated_docs: u64, done_docs: u64, _done_bytes: u64) {
        let b = self.multi.insert_before(
            &self.overall,
            ProgressBar::new(estimated_docs.max(done_docs).max(1)),
        );
        b.set_style(bar_style(
            "{prefix:.dim} [{bar:30}] {done}  {rate}  eta {eta}",
        ));
        b.set_prefix(crate::units::fit(ns, NAME_COLUMNS));
        b.set_position(done_docs);
        self.overall.inc(done_docs);
        // What an earlier run did is not this run's speed: rates and ETAs start from here.
        b.reset_eta();
        if done_docs > 0 {
            self.overall.reset_eta();
        }
        if let Ok(mut m) = self.bars.lock() {
            m.insert(ns.to_string(), b);
        }
    }

    fn progress(&self, ns: &str, docs: u64, _bytes: u64) {
        self.overall.inc(docs);
        if let Ok(m) = self.bars.lock()
            && let Some(b) = m.get(ns)
        {
            b.inc(docs);
        }
    }

    fn wire(&self, to_target_per_sec: f64) {
        self.overall.set_message(format!(
            "  {}/s to the target on the wire",
            crate::units::bytes(to_target_per_sec as i64)
        ));
    }

    fn finish(&self, ns: &str) {
        if let Ok(mut m) = self.bars.lock()
            && let Some(b) = m.remove(ns)
        {
            // The estimate was only an estimate: the overall total takes the real count.
            let (pos, len) = (b.position(), b.length().unwrap_or(0));
            if let Some(total) = self.overall.length() {
                self.overall
                    .set_length((total + pos).saturating_sub(len).max(1));
            }
            b.finish_and_clear();
        }
    }
}

/// A spinner for deployment waits.
pub struct Spinner(ProgressBar);

impl Spinner {
    /// A spinner labelled `label`, drawn only when `enabled`.
    pub fn new(enabled: bool, label: &str) -> Spinner {
        let b = if enabled {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        b.set_prefix(label.to_string());
        b.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        Spinner(b)
    }
}

impl Progress for Spinner {
    fn done(&self) {
        self.0.finish_and_clear();
    }
}

impl Observer for Spinner {}

/// A deployment wait that stops early leaves no frozen spinner behind.
impl Drop for Spinner {
    fn drop(&mut self) {
        self.done();
    }
}

impl DeployObserver for Spinner {
    fn status(&self, line: &str) {
        self.0.set_message(line.to_string());
    }
}
