//! From parsed flags to a command: options built (URIs parsed, secrets kept wrapped), the
//! command run with the terminal as its operator, the output printed.

use crate::aws::AwsOptions;
use crate::cli::render;
use crate::cli::term::Terminal;
use crate::cli::{Cli, Command, DataArgs, GlobalArgs, TargetArgs};
use crate::commands::data::DataOptions;
use crate::commands::resume::ResumeUris;
use crate::commands::{self, Done};
use crate::engine::options::{AtlasSettings, RunOptions, RunnerSettings, Settings, TargetOptions};
use crate::error::Result;
use crate::mongo::ns::{Pattern, Selection, validate_db_name};
use crate::secret::Secret;
use crate::uri::MongoUri;

/// Runs the parsed command and returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    let aws = aws_options(g);
    let done = match &cli.command {
        Command::Plan(a) => {
            let settings = Settings {
                drop: a.drop,
                ..Settings::default()
            };
            let mut t = target_options(&a.target, settings)?;
            t.check_target = uri("--target-uri", a.target_uri.as_ref())?;
            commands::plan::plan(&aws, &t).await?
        }
        Command::Migrate(a) => {
            let settings = Settings {
                freeze: a.freeze,
                deploy_timeout_secs: a.deploy_timeout.as_secs(),
                drop: a.drop,
                ..Settings::default()
            };
            let mut t = target_options(&a.target, settings)?;
            let run = RunOptions {
                dry_run: a.dry_run,
                journal: a.journal.clone(),
                target: uri("--target-uri", a.target_uri.as_ref())?,
            };
            // A dry run checks the target it was shown; a real run's preflight checks it.
            if a.dry_run {
                t.check_target = run.target.clone();
            }
            let term = Terminal::new(g, a.yes, a.json);
            commands::migrate::migrate(&aws, &t, &run, &term).await?
        }
        Command::Resume(a) => {
            let uris = ResumeUris {
                atlas: uri("--atlas-uri", a.atlas_uri.as_ref())?,
                source: uri("--source-uri", a.source_uri.as_ref())?,
                target: uri("--target-uri", a.target_uri.as_ref())?,
                drop: a.drop,
            };
            let term = Terminal::new(g, a.yes, a.json);
            commands::resume::resume(&aws, &a.journal, uris, &term).await?
        }
        Command::Status(a) => commands::migrate::status(&a.journal)?,
        Command::Copy(a) => {
            let term = Terminal::new(g, a.yes, a.json);
            commands::data::copy(&data_options(&a.data)?, a.drop, &a.journal, &term).await?
        }
        Command::Verify(a) => {
            let term = Terminal::new(g, false, a.json);
            commands::data::verify(&data_options(&a.data)?, a.max_examples, &term).await?
        }
        Command::Sync(a) => {
            let term = Terminal::new(g, false, a.json);
            commands::data::sync(&data_options(&a.data)?, &a.journal, &term).await?
        }
        Command::Completions(a) => {
            let mut cmd = crate::cli::command();
            clap_complete::generate(a.shell, &mut cmd, "efs2atlas", &mut std::io::stdout());
            return Ok(0);
        }
        Command::Runner => return Ok(commands::runner::runner().await),
        Command::Man => {
            clap_mangen::Man::new(crate::cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| crate::error::Error::io("writing the manual page", e))?;
            return Ok(0);
        }
        Command::Rollback(a) => {
            let term = Terminal::new(g, a.yes, a.json);
            let (c, s, t) = (&a.cluster, &a.service, a.deploy_timeout);
            commands::rollback::rollback(&aws, c, s, t, &term).await?
        }
    };
    Ok(finish(done, json_flag(&cli.command)))
}

/// Prints what the command produced and returns its exit code.
fn finish(done: Done, json: bool) -> i32 {
    render::output(&done.output, json);
    if let Some(e) = &done.error {
        render::error_line(e);
    }
    done.code
}

fn json_flag(c: &Command) -> bool {
    match c {
        Command::Plan(a) => a.json,
        Command::Migrate(a) => a.json,
        Command::Resume(a) => a.json,
        Command::Status(a) => a.json,
        Command::Copy(a) => a.json,
        Command::Verify(a) => a.json,
        Command::Sync(a) => a.json,
        Command::Rollback(a) => a.json,
        Command::Completions(_) | Command::Man | Command::Runner => false,
    }
}

fn aws_options(g: &GlobalArgs) -> AwsOptions {
    AwsOptions {
        region: g.region.clone(),
        profile: g.profile.clone(),
        attempt_timeout: Some(g.aws_timeout),
    }
}

/// Parses a URI flag's value (its errors never quote the value).
fn uri(flag: &str, s: Option<&Secret>) -> Result<Option<MongoUri>> {
    s.map(|s| MongoUri::parse(flag, s.expose())).transpose()
}

/// The plan's inputs from the flags; `settings` carries the flags only `migrate` has.
fn target_options(t: &TargetArgs, settings: Settings) -> Result<TargetOptions> {
    let atlas_uri_given = t.atlas_uri.is_some();
    let atlas_api = t.atlas_project.as_ref().map(|p| AtlasSettings {
        project: p.clone(),
        cluster: t.atlas_cluster.clone().unwrap_or_default(),
        app_user: t.atlas_app_user.clone(),
        create_users: t.atlas_uri.is_none(),
    });
    let atlas = match (&t.atlas_uri, &atlas_api) {
        (Some(u), _) => MongoUri::parse("--atlas-uri", u.expose())?,
        // Until the Admin API has told the cluster's address: the app user's name on a host
        // that cannot resolve, replaced before anything uses it.
        (None, Some(a)) => crate::engine::plan::atlas::provisional_uri(
            a.app_user.as_deref().unwrap_or(&t.service),
            &format!("{}.invalid", a.cluster),
            None,
        )?,
        (None, None) => {
            return Err(crate::error::Error::usage(
                "give --atlas-uri (or EFS2ATLAS_ATLAS_URI), or --atlas-project and --atlas-cluster",
            ));
        }
    };
    let wire = crate::mongo::wire::set_from(t.compressors.as_deref())?;
    let settings = Settings {
        compressors: wire.text(),
        atlas: atlas_api,
        mongo_container: t.mongo_container.clone(),
        env: t.env.clone(),
        images: t.image.clone(),
        credentials: Some(t.credentials),
        keep_efs: t.keep_efs,
        strategy: t.strategy,
        runner: (t.runner == "ecs").then(|| RunnerSettings {
            // An empty value (`--runner-image ""`, an unset variable expanded) is none.
            image: t.runner_image.clone().filter(|i| !i.trim().is_empty()),
            cpu: t.runner_cpu,
            memory: t.runner_memory,
            execution_role: t.runner_execution_role.clone(),
        }),
        ..settings
    };
    Ok(TargetOptions {
        cluster: t.cluster.clone(),
        service: t.service.clone(),
        source: uri("--source-uri", t.source_uri.as_ref())?,
        check_target: None,
        plan: settings.plan_options(atlas)?,
        atlas_uri_given,
        settings,
    })
}

/// Source, target and selection from the data flags.
fn data_options(d: &DataArgs) -> Result<DataOptions> {
    for db in &d.db {
        validate_db_name("--db", db)?;
    }
    crate::mongo::wire::set_from(d.compressors.as_deref())?;
    let patterns = |flag: &str, v: &[String]| -> Result<Vec<Pattern>> {
        v.iter().map(|p| Pattern::parse(flag, p)).collect()
    };
    Ok(DataOptions {
        source: MongoUri::parse("--source-uri", d.source_uri.expose())?,
        target: MongoUri::parse("--target-uri", d.target_uri.expose())?,
        selection: Selection {
            dbs: d.db.clone(),
            include: patterns("--ns-include", &d.ns_include)?,
            exclude: patterns("--ns-exclude", &d.ns_exclude)?,
            target_db: d.target_db.clone(),
        },
        parallel: d.parallel as usize,
    })
}
