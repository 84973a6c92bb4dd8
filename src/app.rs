//! Command runners: glue from parsed flags to discovery, planning and output.

use std::time::Duration;

use serde_json::json;

use crate::aws::{Aws, AwsOptions};
use crate::cancel::Cancel;
use crate::cli::{
    Cli, Command, CopyArgs, DataArgs, GlobalArgs, PlanArgs, RollbackArgs, SyncArgs, TargetArgs,
    VerifyArgs,
};
use crate::discover::{self, Target};
use crate::envmap::EnvOverride;
use crate::error::{Error, Result, exit};
use crate::journal::{Journal, SharedJournal};
use crate::mongo::Mongo;
use crate::mongo::copy::{self, CopyOptions, Item};
use crate::mongo::ns::{Pattern, Selection};
use crate::plan::{self, Plan, PlanOptions};
use crate::ui;
use crate::uri::MongoUri;
use crate::world::World;

/// How long to wait for a Mongo server to answer before saying it is unreachable.
pub const MONGO_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// Runs the parsed command and returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Plan(args) => plan_cmd(&cli.global, args).await,
        Command::Migrate(a) => {
            let flags = crate::migrate::RunFlags {
                yes: a.yes,
                dry_run: a.dry_run,
                journal: a.journal.clone(),
                freeze: a.freeze,
                deploy_timeout: a.deploy_timeout,
                drop: a.drop,
                json: a.json,
                target_uri: a.target_uri.clone(),
            };
            crate::migrate::migrate(&cli.global, &a.target, &flags).await
        }
        Command::Resume(a) => {
            crate::migrate::resume(
                &cli.global,
                &a.journal,
                a.atlas_uri.clone(),
                a.source_uri.clone(),
                a.target_uri.clone(),
                a.yes,
                a.json,
            )
            .await
        }
        Command::Status(a) => crate::migrate::status(&a.journal, a.json),
        Command::Copy(args) => copy_cmd(&cli.global, args).await,
        Command::Verify(args) => verify_cmd(&cli.global, args).await,
        Command::Sync(args) => sync_cmd(&cli.global, args).await,
        Command::Rollback(args) => rollback_cmd(&cli.global, args).await,
    }
}

/// Parses the flags that shape a plan.
pub fn plan_options(t: &TargetArgs) -> Result<PlanOptions> {
    let atlas = MongoUri::parse("--atlas-uri", &t.atlas_uri)?;
    let env = t
        .env
        .iter()
        .map(|e| EnvOverride::parse(e))
        .collect::<Result<Vec<_>>>()?;
    let images = t
        .image
        .iter()
        .map(|i| {
            i.split_once('=')
                .filter(|(c, img)| !c.is_empty() && !img.is_empty())
                .map(|(c, img)| (c.to_string(), img.to_string()))
                .ok_or_else(|| Error::Usage(format!("--image '{i}' must be CONTAINER=IMAGE, e.g. --image backend=me/backend:atlas")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PlanOptions {
        atlas,
        mongo_container: t.mongo_container.clone(),
        env,
        images,
        credentials: t.credentials,
        keep_efs: t.keep_efs,
        strategy: t.strategy,
    })
}

/// Loads the AWS configuration from the global flags.
pub async fn aws(global: &GlobalArgs) -> Result<Aws> {
    Aws::load(&AwsOptions {
        region: global.region.clone(),
        profile: global.profile.clone(),
        attempt_timeout: Some(global.aws_timeout),
    })
    .await
}

/// Discovers the world for `t` (and the source, when `--source-uri` is given) and plans;
/// `td` plans from that revision instead of the service's current one.
pub async fn discover_and_plan(
    aws: &Aws,
    t: &TargetArgs,
    td: Option<&str>,
) -> Result<(World, Plan)> {
    let opts = plan_options(t)?;
    let source = t
        .source_uri
        .as_deref()
        .map(|s| MongoUri::parse("--source-uri", s))
        .transpose()?;
    let mut world = discover::world(
        aws,
        &Target {
            cluster: &t.cluster,
            service: &t.service,
            task_definition: td,
        },
    )
    .await?;
    if let Some(src) = &source {
        let m = Mongo::connect(src, "source", MONGO_CONNECT_TIMEOUT).await?;
        world.source = Some(discover::mongo::source(&m).await?);
    }
    let plan = plan::plan(&world, &opts)?;
    Ok((world, plan))
}

async fn plan_cmd(global: &GlobalArgs, args: &PlanArgs) -> Result<i32> {
    let aws = aws(global).await?;
    let (world, plan) = discover_and_plan(&aws, &args.target, None).await?;
    if args.json {
        ui::print_json(&json!({"plan": plan, "world": world}));
    } else {
        print!("{}", ui::plan_text(&plan, &world));
    }
    Ok(if plan.ready { exit::OK } else { exit::REFUSED })
}

/// Parses the selection flags.
pub fn selection(d: &DataArgs) -> Result<Selection> {
    for db in &d.db {
        crate::mongo::ns::validate_db_name("--db", db)?;
    }
    Ok(Selection {
        dbs: d.db.clone(),
        include: d
            .ns_include
            .iter()
            .map(|p| Pattern::parse("--ns-include", p))
            .collect::<Result<_>>()?,
        exclude: d
            .ns_exclude
            .iter()
            .map(|p| Pattern::parse("--ns-exclude", p))
            .collect::<Result<_>>()?,
        target_db: d.target_db.clone(),
    })
}

/// Connects to both sides of a data command.
async fn connect_pair(d: &DataArgs) -> Result<(Mongo, Mongo)> {
    let s = MongoUri::parse("--source-uri", &d.source_uri)?;
    let t = MongoUri::parse("--target-uri", &d.target_uri)?;
    let (src, dst) = tokio::join!(
        Mongo::connect(&s, "source", MONGO_CONNECT_TIMEOUT),
        Mongo::connect(&t, "target", MONGO_CONNECT_TIMEOUT)
    );
    Ok((src?, dst?))
}

/// What identifies one copy run: the same source, target and selection.
fn copy_fingerprint(src: &Mongo, dst: &Mongo, d: &DataArgs) -> String {
    let mut dbs = d.db.clone();
    dbs.sort();
    let text = format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}",
        src.uri.redacted(),
        dst.uri.redacted(),
        dbs,
        d.ns_include,
        d.ns_exclude,
        d.target_db
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// Ctrl-C/SIGTERM handling and progress bars for a data command over `items`.
fn watch(global: &GlobalArgs, items: &[Item], label: &str) -> (Cancel, ui::Bars) {
    let cancel = Cancel::new();
    cancel.on_signals();
    let total = items.iter().map(|i| i.estimated_docs).sum();
    let bars = ui::Bars::new(
        total,
        ui::progress_enabled(global.no_progress, global.quiet),
        label,
    );
    (cancel, bars)
}

/// What `copy` and `sync` start from: both servers, the selected collections, the held
/// journal lock, and the journal (this run's, or a fresh one).
struct DataRun {
    src: Mongo,
    dst: Mongo,
    sel: Selection,
    items: Vec<Item>,
    _lock: crate::journal::JournalLock,
    journal: Journal,
    fingerprint: String,
}

async fn start_data_run(d: &DataArgs, path: &std::path::Path, kind: &str) -> Result<DataRun> {
    let sel = selection(d)?;
    let (src, dst) = connect_pair(d).await?;
    let items = copy::select(&src, &sel).await?;
    if items.is_empty() {
        return Err(Error::Usage(format!(
            "nothing to {kind}: the source has no collections matching --db/--ns-include/--ns-exclude"
        )));
    }
    let lock = crate::journal::JournalLock::acquire(path, kind)?;
    let fingerprint = copy_fingerprint(&src, &dst, d);
    let journal = match Journal::load(path)? {
        Some(j) if j.kind != kind || j.fingerprint != fingerprint => {
            return Err(Error::Journal {
                path: path.display().to_string(),
                message: format!(
                    "belongs to another run ({} from {} to {}); pass a different --journal, or delete it to start over",
                    j.kind, j.copy.source, j.copy.target
                ),
            });
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
        sel,
        items,
        _lock: lock,
        journal,
        fingerprint,
    })
}

async fn copy_cmd(global: &GlobalArgs, args: &CopyArgs) -> Result<i32> {
    let DataRun {
        src,
        dst,
        sel,
        items,
        _lock,
        journal,
        ..
    } = start_data_run(&args.data, &args.journal, "copy").await?;
    let resuming = !journal.copy.collections.is_empty();
    if args.drop && !resuming {
        let names: Vec<String> = items.iter().map(|i| i.target.to_string()).collect();
        let q = format!(
            "--drop: drop {} target collection(s) on {} before copying ({})?",
            names.len(),
            dst.uri.redacted(),
            names.join(", ")
        );
        if !ui::confirm(&q, args.yes)? {
            return Err(Error::Refused("not confirmed; nothing was changed".into()));
        }
    }
    let shared = SharedJournal::new(args.journal.clone(), journal, copy::JOURNAL_INTERVAL);
    copy::check_targets(&dst, &items, &shared, args.drop).await?;
    shared.flush()?;

    let (cancel, bars) = watch(global, &items, "copy");
    let opts = CopyOptions {
        selection: sel,
        parallel: args.data.parallel as usize,
        drop: args.drop,
        ..CopyOptions::default()
    };
    let result = copy::run(&src, &dst, &items, &opts, &shared, &bars, &cancel).await;
    bars.finish();
    let report = match result {
        Ok(r) => r,
        Err(Error::Interrupted(_)) => {
            return Err(Error::Interrupted(format!(
                "copy interrupted; progress is saved in {}. Run the same command again to continue",
                args.journal.display()
            )));
        }
        Err(e) => return Err(e),
    };
    if args.json {
        ui::print_json(&json!({"copy": report, "journal": args.journal}));
    } else {
        print!("{}", ui::copy_text(&report));
    }
    if !report.index_errors.is_empty() {
        ui::error_line(&format!(
            "the data was copied but {} index build(s) failed on the target: {}",
            report.index_errors.len(),
            report.index_errors.join("; ")
        ));
        return Ok(exit::FAILED);
    }
    Ok(exit::OK)
}

async fn verify_cmd(global: &GlobalArgs, args: &VerifyArgs) -> Result<i32> {
    let sel = selection(&args.data)?;
    let (src, dst) = connect_pair(&args.data).await?;
    let items = copy::select(&src, &sel).await?;
    let (cancel, bars) = watch(global, &items, "verify");
    let opts = crate::mongo::verify::VerifyOptions {
        selection: sel,
        parallel: args.data.parallel as usize,
        max_examples: args.max_examples,
    };
    let result = crate::mongo::verify::run(&src, &dst, &items, &opts, &bars, &cancel).await;
    bars.finish();
    let report = result?;
    if args.json {
        ui::print_json(&json!({"verify": report}));
    } else {
        print!("{}", ui::verify_text(&report));
    }
    if report.ok {
        Ok(exit::OK)
    } else {
        ui::error_line(&report.summary());
        Ok(exit::MISMATCH)
    }
}

/// The copy journal a standalone sync may learn from (the copy command's default path).
const COPY_JOURNAL: &str = "efs2atlas-copy.journal.json";

async fn sync_cmd(global: &GlobalArgs, args: &SyncArgs) -> Result<i32> {
    let DataRun {
        src,
        dst,
        sel,
        items,
        _lock,
        journal,
        fingerprint,
    } = start_data_run(&args.data, &args.journal, "sync").await?;
    // Target collections efs2atlas made: the same run's copy journal and this sync's own.
    let mut owned = journal.created_targets();
    if let Ok(Some(cj)) = Journal::load(std::path::Path::new(COPY_JOURNAL))
        && cj.kind == "copy"
        && cj.fingerprint == fingerprint
    {
        owned.extend(cj.created_targets());
    }
    let shared = SharedJournal::new(args.journal.clone(), journal, copy::JOURNAL_INTERVAL);
    shared.flush()?;
    let (cancel, bars) = watch(global, &items, "sync");
    let opts = crate::mongo::sync::SyncOptions {
        selection: sel,
        parallel: args.data.parallel as usize,
        owned,
    };
    let result =
        crate::mongo::sync::run(&src, &dst, &items, &opts, Some(&shared), &bars, &cancel).await;
    bars.finish();
    let report = match result {
        Ok(r) => r,
        Err(Error::Interrupted(_)) => {
            shared.flush()?;
            return Err(Error::Interrupted(format!(
                "sync interrupted; finished collections are recorded in {}. Run the same command again to continue",
                args.journal.display()
            )));
        }
        Err(e) => {
            shared.flush()?;
            return Err(e.with_hint(&format!(
                "collections already synced are recorded in {}; run the same command again to continue",
                args.journal.display()
            )));
        }
    };
    // Nothing is left to continue: a later sync must compare everything again.
    std::fs::remove_file(&args.journal).map_err(|e| {
        Error::io(
            format!("removing the finished journal {}", args.journal.display()),
            e,
        )
    })?;
    if args.json {
        ui::print_json(&json!({"sync": report}));
    } else {
        print!("{}", ui::sync_text(&report));
    }
    if !report.kept_extra_collections.is_empty() {
        ui::error_line(&format!(
            "the target has collection(s) the source does not, which efs2atlas did not create, so they were left alone: {}; drop them yourself or narrow the selection",
            report.kept_extra_collections.join(", ")
        ));
        return Ok(exit::MISMATCH);
    }
    Ok(exit::OK)
}

async fn rollback_cmd(global: &GlobalArgs, args: &RollbackArgs) -> Result<i32> {
    let aws = aws(global).await?;
    let t = crate::deploy::rollback_target(&aws, &args.cluster, &args.service).await?;
    ui::notice(&format!(
        "rollback: service {} from {} back to {} (MongoDB on EFS {}). Writes the app made to Atlas since the cutover are not in the old MongoDB; they stay only in Atlas.",
        args.service,
        t.current,
        t.target,
        t.file_systems.join(", ")
    ));
    if !ui::confirm(
        &format!("Roll service {} back to {}?", args.service, t.target),
        args.yes,
    )? {
        return Err(Error::Refused("not confirmed; nothing was changed".into()));
    }
    let cancel = Cancel::new();
    cancel.on_signals();
    let spinner = ui::Spinner::new(
        ui::progress_enabled(global.no_progress, global.quiet),
        "rollback",
    );
    let r = crate::deploy::deploy(
        &aws,
        &args.cluster,
        &args.service,
        &t.target,
        &t.current,
        args.deploy_timeout,
        &spinner,
        &cancel,
    )
    .await;
    spinner.finish();
    let r = r?;
    if args.json {
        ui::print_json(&json!({"rollback": r}));
    } else {
        println!("{}", ui::deploy_text(&r));
    }
    if r.ok {
        Ok(exit::OK)
    } else {
        ui::error_line(&format!(
            "the rolled-back revision did not become steady ({:?}); the service was returned to {}",
            r.wait, t.current
        ));
        Ok(exit::FAILED)
    }
}
