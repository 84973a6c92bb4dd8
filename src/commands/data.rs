//! The data commands: `copy`, `verify` and `sync` between any two MongoDBs.

use std::path::Path;

use crate::commands::{Done, Output};
use crate::engine::context::MONGO_CONNECT_TIMEOUT;
use crate::engine::journal::{Journal, SharedJournal};
use crate::engine::lock::JournalLock;
use crate::engine::operator::{Operator, Progress, ask_first};
use crate::error::{Error, Result, exit};
use crate::mongo::Mongo;
use crate::mongo::copy::{self, CopyOptions};
use crate::mongo::jobs::{self, Item};
use crate::mongo::ns::Selection;
use crate::mongo::progress::ProgressStore;
use crate::mongo::sync::{self, SyncOptions};
use crate::mongo::verify::{self, VerifyOptions};
use crate::uri::MongoUri;
use crate::watch::Report;

/// How often the journal is written during a data run (plus at every collection boundary).
const JOURNAL_INTERVAL: std::time::Duration = copy::JOURNAL_INTERVAL;

/// The copy journal a standalone sync may learn from (the copy command's default path).
pub const COPY_JOURNAL: &str = "efs2atlas-copy.journal.json";

/// Source, target and which namespaces (shared by copy, verify and sync).
#[derive(Clone, Debug)]
pub struct DataOptions {
    /// The MongoDB to read from.
    pub source: MongoUri,
    /// The MongoDB to write to, or compare with.
    pub target: MongoUri,
    /// Which namespaces.
    pub selection: Selection,
    /// Collections in flight at once.
    pub parallel: usize,
}

async fn connect_pair(d: &DataOptions) -> Result<(Mongo, Mongo)> {
    let (src, dst) = tokio::join!(
        Mongo::connect(&d.source, "source", MONGO_CONNECT_TIMEOUT),
        Mongo::connect(&d.target, "target", MONGO_CONNECT_TIMEOUT)
    );
    Ok((src?, dst?))
}

/// What identifies one data run: the same source, target and selection.
fn fingerprint(d: &DataOptions) -> String {
    let sel = &d.selection;
    let mut dbs = sel.dbs.clone();
    dbs.sort();
    let text = format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}",
        d.source.redacted(),
        d.target.redacted(),
        dbs,
        sel.include,
        sel.exclude,
        sel.target_db
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// Bars for a data run over `items`, with Ctrl-C/SIGTERM handling.
fn watch(
    op: &dyn Operator,
    items: &[Item],
    label: &str,
) -> (crate::cancel::Cancel, Box<dyn Progress>) {
    let cancel = crate::cancel::Cancel::new();
    cancel.on_signals();
    let bars = op.bars(label, items.iter().map(|i| i.estimated_docs).sum());
    (cancel, bars)
}

/// The watchdog's reports: a line for the operator, and in the journal's lock for `status`.
fn stalls<'a>(op: &'a dyn Operator, journal: Option<&'a Path>) -> impl FnMut(Report) + 'a {
    move |r| match r {
        Report::Stalled(line) => {
            op.notice(&line);
            if let Some(j) = journal {
                crate::engine::lock::note_waiting(j, Some(&line));
            }
        }
        Report::Moving => {
            op.notice("moving again");
            if let Some(j) = journal {
                crate::engine::lock::note_waiting(j, None);
            }
        }
    }
}

/// What `copy` and `sync` start from: both servers, the selected collections, the held
/// journal lock, and the journal (this run's, or a fresh one).
struct DataRun {
    src: Mongo,
    dst: Mongo,
    items: Vec<Item>,
    _lock: JournalLock,
    journal: Journal,
}

async fn start_data_run(d: &DataOptions, path: &Path, kind: &str) -> Result<DataRun> {
    let (src, dst) = connect_pair(d).await?;
    let items = jobs::select(&src, &d.selection).await?;
    if items.is_empty() {
        return Err(Error::usage(format!(
            "nothing to {kind}: the source has no collections matching --db/--ns-include/--ns-exclude"
        )));
    }
    let lock = JournalLock::acquire(path, kind)?;
    let fingerprint = fingerprint(d);
    let journal = match Journal::load(path)? {
        Some(j) if j.kind != kind || j.fingerprint != fingerprint => {
            return Err(Error::journal(
                path.display().to_string(),
                format!(
                    "belongs to another run ({} from {} to {}); pass a different --journal, or delete it to start over",
                    j.kind, j.copy.source, j.copy.target
                ),
            ));
        }
        Some(j) => {
            tracing::info!("resuming from journal {}", path.display());
            j
        }
        None => {
            let mut j = Journal::new(kind, &fingerprint);
            j.copy.source = src.uri.redacted();
            j.copy.target = dst.uri.redacted();
            j
        }
    };
    Ok(DataRun {
        src,
        dst,
        items,
        _lock: lock,
        journal,
    })
}

/// `efs2atlas copy`.
pub async fn copy(d: &DataOptions, drop: bool, path: &Path, op: &dyn Operator) -> Result<Done> {
    let DataRun {
        src,
        dst,
        items,
        _lock,
        journal,
    } = start_data_run(d, path, "copy").await?;
    let resuming = !journal.copy.collections.is_empty();
    if drop && !resuming {
        let names: Vec<String> = items.iter().map(|i| i.target.to_string()).collect();
        let q = format!(
            "--drop: drop {} target collection(s) on {} before copying ({})?",
            names.len(),
            dst.uri.redacted(),
            names.join(", ")
        );
        if !ask_first(op, &q)? {
            return Err(Error::refused("not confirmed; nothing was changed"));
        }
    }
    let shared = SharedJournal::new(path.to_path_buf(), journal, JOURNAL_INTERVAL);
    copy::check_target_access(&dst, &items).await?;
    let busy = copy::busy_targets(&dst, &items, |it| copy::started_by(&shared, it), drop).await?;
    copy::refuse_busy(&busy, |it| {
        format!(
            "Pass --drop to replace {it} (their data is lost), --ns-exclude to skip {it}, or copy into another database with --target-db"
        )
    })?;
    shared.flush()?;
    let (cancel, bars) = watch(op, &items, "copy");
    let opts = CopyOptions {
        selection: d.selection.clone(),
        parallel: d.parallel,
        drop,
        ..CopyOptions::default()
    };
    crate::cancel::set_last_words(format!(
        "copy interrupted; progress is saved in {}. Run the same command again to continue",
        path.display()
    ));
    let run = copy::run(&src, &dst, &items, &opts, &shared, &*bars, &cancel);
    let run = crate::watch::watched("copy", run, stalls(op, Some(path)));
    let result = crate::cancel::or_forced(run, "copy interrupted").await;
    bars.done();
    let report = match result {
        Ok(r) => r,
        Err(e) if e.is_interrupted() => {
            return Err(Error::interrupted(format!(
                "copy interrupted; progress is saved in {}. Run the same command again to continue",
                path.display()
            )));
        }
        Err(e) => return Err(e),
    };
    let error = (!report.index_errors.is_empty()).then(|| {
        format!(
            "the data was copied but {} index build(s) failed on the target: {}",
            report.index_errors.len(),
            report.index_errors.join("; ")
        )
    });
    let output = Output::Copy {
        report,
        journal: path.to_path_buf(),
    };
    Ok(Done::unless(output, error, exit::FAILED))
}

/// `efs2atlas verify`.
pub async fn verify(d: &DataOptions, max_examples: usize, op: &dyn Operator) -> Result<Done> {
    let (src, dst) = connect_pair(d).await?;
    let items = jobs::select(&src, &d.selection).await?;
    let (cancel, bars) = watch(op, &items, "verify");
    let opts = VerifyOptions {
        selection: d.selection.clone(),
        parallel: d.parallel,
        max_examples,
        read_back: Default::default(),
    };
    let run = verify::run(&src, &dst, &items, &opts, &*bars, &cancel);
    let run = crate::watch::watched("verify", run, stalls(op, None));
    let result = crate::cancel::or_forced(run, "verify interrupted; nothing was changed").await;
    bars.done();
    let report = result?;
    let error = (!report.ok).then(|| report.summary());
    Ok(Done::unless(Output::Verify(report), error, exit::MISMATCH))
}

/// `efs2atlas sync`.
pub async fn sync(d: &DataOptions, path: &Path, op: &dyn Operator) -> Result<Done> {
    let DataRun {
        src,
        dst,
        items,
        _lock,
        journal,
    } = start_data_run(d, path, "sync").await?;
    // Target collections efs2atlas made: the same run's copy journal and this sync's own.
    let mut owned = journal.created_targets();
    if let Ok(Some(cj)) = Journal::load(Path::new(COPY_JOURNAL))
        && cj.kind == "copy"
        && cj.fingerprint == journal.fingerprint
    {
        owned.extend(cj.created_targets());
    }
    let shared = SharedJournal::new(path.to_path_buf(), journal, JOURNAL_INTERVAL);
    shared.flush()?;
    let (cancel, bars) = watch(op, &items, "sync");
    let opts = SyncOptions {
        selection: d.selection.clone(),
        parallel: d.parallel,
        owned,
    };
    let store: &dyn ProgressStore = &shared;
    crate::cancel::set_last_words(format!(
        "sync interrupted; finished collections are recorded in {}. Run the same command again to continue",
        path.display()
    ));
    let run = sync::run(&src, &dst, &items, &opts, Some(store), &*bars, &cancel);
    let run = crate::watch::watched("sync", run, stalls(op, Some(path)));
    let result = crate::cancel::or_forced(run, "sync interrupted").await;
    bars.done();
    let report = match result {
        Ok(r) => r,
        Err(e) => return Err(sync_stopped(e, &shared, path)),
    };
    // Nothing is left to continue: a later sync must compare everything again.
    std::fs::remove_file(path).map_err(|e| {
        Error::io(
            format!("removing the finished journal {}", path.display()),
            e,
        )
    })?;
    let error = (!report.kept_extra_collections.is_empty()).then(|| {
        format!(
            "the target has collection(s) the source does not, which efs2atlas did not create, so they were left alone: {}; drop them yourself or narrow the selection",
            report.kept_extra_collections.join(", ")
        )
    });
    Ok(Done::unless(Output::Sync(report), error, exit::MISMATCH))
}

/// A sync that stopped: its journal saved, and what to run next.
fn sync_stopped(e: Error, shared: &SharedJournal, path: &Path) -> Error {
    if let Err(save) = shared.flush() {
        return save;
    }
    match e {
        e if e.is_interrupted() => Error::interrupted(format!(
            "sync interrupted; finished collections are recorded in {}. Run the same command again to continue",
            path.display()
        )),
        e => e.with_hint(&format!(
            "collections already synced are recorded in {}; run the same command again to continue",
            path.display()
        )),
    }
}
