//! Named stages from `efs2atlas.toml` (`--stage NAME`): a stage supplies flags the command
//! line did not give, so `plan --stage dev` and `migrate --stage prod` differ only in the name.
//! The file never holds a secret: a stage names the environment variable that holds a URI.
//! Destructive consent (`--drop`, `--yes`) is never read from a file either.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use serde::Deserialize;
use toml::Spanned;

/// The file's default name, looked up in the current directory.
pub const DEFAULT_FILE: &str = "efs2atlas.toml";

/// The commands that take `--stage`.
const STAGED: &[&str] = &["plan", "migrate", "resume", "status"];

/// The whole file: only `[stage.NAME]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    stage: BTreeMap<String, Stage>,
}

/// One stage: every key is optional; the command line overrides each.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stage {
    cluster: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
    atlas_uri_env: Option<Spanned<String>>,
    source_uri_env: Option<Spanned<String>>,
    target_uri_env: Option<Spanned<String>>,
    mongo_container: Option<Spanned<String>>,
    credentials: Option<Spanned<String>>,
    strategy: Option<Spanned<String>>,
    freeze: Option<Spanned<String>>,
    deploy_timeout: Option<Spanned<String>>,
    journal: Option<Spanned<String>>,
    runner: Option<Spanned<String>>,
    runner_image: Option<Spanned<String>>,
    runner_execution_role: Option<Spanned<String>>,
    runner_cpu: Option<Spanned<u32>>,
    runner_memory: Option<Spanned<u32>>,
    atlas_project: Option<Spanned<String>>,
    atlas_cluster: Option<Spanned<String>>,
    atlas_app_user: Option<Spanned<String>>,
    compressors: Option<Spanned<String>>,
    keep_efs: Option<Spanned<bool>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    image: Option<Spanned<BTreeMap<String, String>>>,
    // Keys refused with a reason rather than as unknown.
    atlas_uri: Option<Spanned<toml::Value>>,
    source_uri: Option<Spanned<toml::Value>>,
    target_uri: Option<Spanned<toml::Value>>,
    drop: Option<Spanned<toml::Value>>,
    yes: Option<Spanned<toml::Value>>,
}

/// A stage the command line used: shown once, so the operator sees where values came from.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The stage's name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The keys it supplied (flags given on the command line are not among them).
    pub keys: Vec<String>,
}

/// What went wrong with a stage: one sentence naming the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StageError(String);

/// Adds the flags the chosen stage supplies to `args` (after every flag given, so clap sees
/// them as given; a flag already on the command line is left out). Returns the arguments
/// unchanged when no `--stage` is given or the command line does not parse (clap then reports it).
pub fn apply(
    cmd: &clap::Command,
    args: Vec<OsString>,
) -> Result<(Vec<OsString>, Option<Applied>), StageError> {
    let relaxed = relax(cmd.clone());
    let Ok(matches) = relaxed.clone().try_get_matches_from(&args) else {
        return Ok((args, None));
    };
    let Some((sub, sm)) = matches.subcommand() else {
        return Ok((args, None));
    };
    let Some(name) = sm
        .try_get_one::<String>("stage")
        .ok()
        .flatten()
        .filter(|_| STAGED.contains(&sub))
        .cloned()
    else {
        return Ok((args, None));
    };
    let file = sm
        .get_one::<PathBuf>("config")
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    let text = read(&file, &name)?;
    let stage = find(&file, &text, &name)?;
    let line = Cmdline {
        relaxed: &relaxed,
        root: &matches,
        sub,
        sm,
    };
    let at = |span: std::ops::Range<usize>| Locate {
        file: &file,
        text: &text,
        stage: &name,
        span,
    };
    refuse_secrets(&stage, &at)?;
    let mut extra = Extra::default();
    extra.plain(&stage, &line, &at)?;
    extra.uris(&stage, &line, &at)?;
    extra.tables(&stage, &line);
    let mut args = args;
    args.extend(extra.args);
    let keys = extra.keys;
    Ok((args, Some(Applied { name, file, keys })))
}

/// What the command line gave, read with nothing required.
struct Cmdline<'a> {
    relaxed: &'a clap::Command,
    root: &'a clap::ArgMatches,
    sub: &'a str,
    sm: &'a clap::ArgMatches,
}

impl Cmdline<'_> {
    /// True when the command has flag `id` (its own, or a global one).
    fn takes(&self, id: &str) -> bool {
        let own = self
            .relaxed
            .find_subcommand(self.sub)
            .is_some_and(|c| c.get_arguments().any(|a| a.get_id() == id));
        own || self
            .relaxed
            .get_arguments()
            .any(|a| a.get_id() == id && a.is_global_set())
    }

    /// True when flag `id` was given on the command line (which then overrides the stage).
    fn given(&self, id: &str) -> bool {
        let on = |m: &clap::ArgMatches| {
            m.try_contains_id(id).unwrap_or(false)
                && m.value_source(id) == Some(ValueSource::CommandLine)
        };
        on(self.sm) || on(self.root)
    }
}

/// The flags a stage adds, and the keys they came from.
#[derive(Default)]
struct Extra {
    args: Vec<OsString>,
    keys: Vec<String>,
}

impl Extra {
    fn push(&mut self, flag: &str, value: impl Into<OsString>) {
        self.args.push(flag.into());
        self.args.push(value.into());
    }

    /// Keys that are a flag's value as they are (checked by the flag's own parser).
    fn plain<'a>(
        &mut self,
        stage: &Stage,
        line: &Cmdline<'_>,
        at: &impl Fn(std::ops::Range<usize>) -> Locate<'a>,
    ) -> Result<(), StageError> {
        let plain = [
            ("cluster", &stage.cluster),
            ("service", &stage.service),
            ("region", &stage.region),
            ("profile", &stage.profile),
            ("mongo_container", &stage.mongo_container),
            ("credentials", &stage.credentials),
            ("strategy", &stage.strategy),
            ("freeze", &stage.freeze),
            ("deploy_timeout", &stage.deploy_timeout),
            ("journal", &stage.journal),
            ("runner", &stage.runner),
            ("runner_image", &stage.runner_image),
            ("runner_execution_role", &stage.runner_execution_role),
            ("atlas_project", &stage.atlas_project),
            ("atlas_cluster", &stage.atlas_cluster),
            ("atlas_app_user", &stage.atlas_app_user),
            ("compressors", &stage.compressors),
        ];
        let numbers = [
            ("runner_cpu", &stage.runner_cpu),
            ("runner_memory", &stage.runner_memory),
        ];
        let numbers: Vec<(&str, Option<Spanned<String>>)> = numbers
            .iter()
            .map(|(id, v)| {
                let text = v
                    .as_ref()
                    .map(|n| Spanned::new(n.span(), n.get_ref().to_string()));
                (*id, text)
            })
            .collect();
        let plain = plain
            .into_iter()
            .map(|(id, v)| (id, v.clone()))
            .chain(numbers);
        for (id, value) in plain {
            let Some(value) = value else { continue };
            if !line.takes(id) || line.given(id) {
                continue;
            }
            let flag = flag_of(id);
            check_value(line.relaxed, line.sub, &flag, value.get_ref())
                .map_err(|m| at(value.span()).error(id, &m))?;
            self.push(&flag, value.get_ref());
            self.keys.push(id.to_string());
        }
        if let Some(keep) = &stage.keep_efs
            && *keep.get_ref()
            && line.takes("keep_efs")
            && !line.given("keep_efs")
        {
            self.args.push("--keep-efs".into());
            self.keys.push("keep_efs".into());
        }
        Ok(())
    }

    /// URIs, read from the environment variables the stage names.
    fn uris<'a>(
        &mut self,
        stage: &Stage,
        line: &Cmdline<'_>,
        at: &impl Fn(std::ops::Range<usize>) -> Locate<'a>,
    ) -> Result<(), StageError> {
        let uris = [
            ("atlas_uri", &stage.atlas_uri_env),
            ("source_uri", &stage.source_uri_env),
            ("target_uri", &stage.target_uri_env),
        ];
        for (id, var) in uris {
            let Some(var) = var else { continue };
            if !line.takes(id) || line.given(id) {
                continue;
            }
            let value = std::env::var_os(var.get_ref()).ok_or_else(|| {
                at(var.span()).error(
                    &format!("{id}_env"),
                    &format!(
                        "names the environment variable {}, which is not set; export it (the URI \
                         stays out of the file and of shell history)",
                        var.get_ref()
                    ),
                )
            })?;
            self.push(&flag_of(id), value);
            self.keys.push(format!("{id}_env ({})", var.get_ref()));
        }
        Ok(())
    }

    /// `[stage.X.env]` and `[stage.X.image]`: a NAME given on the command line overrides the
    /// stage's; the stage's others stay.
    fn tables(&mut self, stage: &Stage, line: &Cmdline<'_>) {
        for (id, table) in [("env", &stage.env), ("image", &stage.image)] {
            let Some(table) = table else { continue };
            if !line.takes(id) {
                continue;
            }
            let given: Vec<String> = if line.given(id) {
                line.sm
                    .get_many::<String>(id)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.split_once('=').map(|(n, _)| n.to_string()))
                    .collect()
            } else {
                Vec::new()
            };
            let mut used = false;
            for (k, v) in table.get_ref() {
                if !given.contains(k) {
                    self.push(&flag_of(id), format!("{k}={v}"));
                    used = true;
                }
            }
            if used {
                self.keys.push(id.to_string());
            }
        }
    }
}

/// The command with nothing required, to find `--stage` and what the command line gave.
fn relax(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd;
    for sub in STAGED {
        cmd = cmd.mut_subcommand(sub, |sc| sc.mut_args(|a| a.required(false)));
    }
    cmd
}

/// `deploy_timeout` → `--deploy-timeout`.
fn flag_of(id: &str) -> String {
    format!("--{}", id.replace('_', "-"))
}

/// Runs one value through the flag's own parser, so a bad value names the file's line.
fn check_value(relaxed: &clap::Command, sub: &str, flag: &str, value: &str) -> Result<(), String> {
    relaxed
        .clone()
        .try_get_matches_from([
            OsString::from("efs2atlas"),
            sub.into(),
            flag.into(),
            value.into(),
        ])
        .map(|_| ())
        .map_err(|e| {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let possible = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("[possible values"))
                .map(|l| format!(" {l}"))
                .unwrap_or_default();
            format!("{first}{possible}")
        })
}

/// Reads the file, or says how to make one.
fn read(file: &Path, stage: &str) -> Result<String, StageError> {
    std::fs::read_to_string(file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StageError(format!(
                "--stage {stage}: no {} here; create it with a [stage.{stage}] table (see the \
                 README, \"Stages\"), or name the file with --config PATH",
                file.display()
            ))
        } else {
            StageError(format!(
                "--stage {stage}: cannot read {}: {e}",
                file.display()
            ))
        }
    })
}

/// Parses the file and picks the stage.
fn find(file: &Path, text: &str, name: &str) -> Result<Stage, StageError> {
    let mut parsed: File = toml::from_str(text).map_err(|e| {
        let message = known_keys(e.message());
        match e.span() {
            Some(span) => StageError(format!(
                "{} line {}: {message}",
                file.display(),
                line_of(text, span.start)
            )),
            None => StageError(format!("{}: {message}", file.display())),
        }
    })?;
    parsed.stage.remove(name).ok_or_else(|| {
        let names: Vec<&str> = parsed.stage.keys().map(String::as_str).collect();
        let defined = if names.is_empty() {
            "it defines no [stage.NAME] table".to_string()
        } else {
            format!("it defines {}", names.join(", "))
        };
        StageError(format!(
            "--stage {name}: {} has no [stage.{name}] ({defined})",
            file.display()
        ))
    })
}

/// The parser's message, with "key" for "field" and only the keys a stage may set listed.
fn known_keys(message: &str) -> String {
    if let Some((head, _)) = message.split_once(", expected `stage`") {
        return format!(
            "{}; the file holds only [stage.NAME] tables",
            head.replacen("unknown field", "unknown key", 1)
        );
    }
    let Some((head, _)) = message.split_once(", expected one of") else {
        return message.to_string();
    };
    let head = head.replacen("unknown field", "unknown key", 1);
    if !head.starts_with("unknown key") {
        return head;
    }
    let keys = [
        "cluster",
        "service",
        "region",
        "profile",
        "atlas_uri_env",
        "source_uri_env",
        "target_uri_env",
        "mongo_container",
        "credentials",
        "strategy",
        "freeze",
        "deploy_timeout",
        "journal",
        "runner",
        "runner_image",
        "runner_execution_role",
        "runner_cpu",
        "runner_memory",
        "atlas_project",
        "atlas_cluster",
        "atlas_app_user",
        "compressors",
        "keep_efs",
        "env",
        "image",
    ];
    let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    format!("{head}; a stage takes {}", list.join(", "))
}

/// Refuses keys that would put a secret or a destructive consent in the file.
fn refuse_secrets<'a>(
    stage: &Stage,
    at: &impl Fn(std::ops::Range<usize>) -> Locate<'a>,
) -> Result<(), StageError> {
    for (key, value) in [
        ("atlas_uri", &stage.atlas_uri),
        ("source_uri", &stage.source_uri),
        ("target_uri", &stage.target_uri),
    ] {
        if let Some(v) = value {
            return Err(at(v.span()).error(
                key,
                &format!(
                    "a URI holds a password and is never read from a file; put it in an \
                     environment variable and name that variable with {key}_env"
                ),
            ));
        }
    }
    for (key, value) in [("drop", &stage.drop), ("yes", &stage.yes)] {
        if let Some(v) = value {
            return Err(at(v.span()).error(
                key,
                &format!("is never read from a file; give --{key} on the command line"),
            ));
        }
    }
    Ok(())
}

/// Where a key sits, for messages.
struct Locate<'a> {
    file: &'a Path,
    text: &'a str,
    stage: &'a str,
    span: std::ops::Range<usize>,
}

impl Locate<'_> {
    fn error(&self, key: &str, message: &str) -> StageError {
        StageError(format!(
            "{} line {}: [stage.{}] {key}: {message}",
            self.file.display(),
            line_of(self.text, self.span.start),
            self.stage
        ))
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(file: &str, args: &[&str]) -> Result<(Vec<String>, Option<Applied>), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("efs2atlas.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.push("--config".into());
        argv.push(path.clone().into());
        apply(&crate::cli::command(), argv)
            .map(|(a, applied)| {
                (
                    a.into_iter()
                        .map(|s| s.to_string_lossy().into_owned())
                        .collect(),
                    applied,
                )
            })
            .map_err(|e| e.to_string().replace(&path.display().to_string(), "FILE"))
    }

    const FILE: &str = r#"
[stage.dev]
cluster = "dev-cluster"
service = "goals"
atlas_uri_env = "EFS2ATLAS_TEST_STAGE_URI"
strategy = "freeze-first"
keep_efs = true

[stage.dev.env]
MONGODB_URL = "{uri}"
MONGODB_NAME = "{db}"
"#;

    #[test]
    fn a_stage_supplies_what_the_command_line_did_not_give() {
        // SAFETY: only this test reads this variable.
        unsafe { std::env::set_var("EFS2ATLAS_TEST_STAGE_URI", "mongodb://u:p@h/db") };
        let (args, applied) = run(
            FILE,
            &[
                "efs2atlas",
                "migrate",
                "--stage",
                "dev",
                "--cluster",
                "mine",
                "--env",
                "MONGODB_NAME=other",
            ],
        )
        .unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("--cluster mine"), "{joined}");
        assert!(!joined.contains("dev-cluster"), "{joined}");
        assert!(joined.contains("--service goals"), "{joined}");
        assert!(joined.contains("--strategy freeze-first"), "{joined}");
        assert!(joined.contains("--keep-efs"), "{joined}");
        assert!(joined.contains("--env MONGODB_URL={uri}"), "{joined}");
        assert!(!joined.contains("MONGODB_NAME={db}"), "{joined}");
        assert!(
            joined.contains("--atlas-uri mongodb://u:p@h/db"),
            "{joined}"
        );
        let applied = applied.unwrap();
        assert_eq!(applied.name, "dev");
        assert!(!applied.keys.contains(&"cluster".to_string()));
        // Resume takes only what it has flags for.
        let (args, _) = run(FILE, &["efs2atlas", "resume", "--stage", "dev"]).unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("--atlas-uri"), "{joined}");
        assert!(!joined.contains("--cluster"), "{joined}");
    }

    #[test]
    fn without_stage_the_arguments_are_untouched() {
        let (args, applied) = run(FILE, &["efs2atlas", "plan", "--cluster", "c"]).unwrap();
        assert!(applied.is_none());
        assert_eq!(args[..4], ["efs2atlas", "plan", "--cluster", "c"]);
    }

    #[test]
    fn bad_files_name_the_line_and_the_key() {
        let e = run(
            "[stage.prod]\ncluster = \"c\"\nclustr = \"x\"\n",
            &["efs2atlas", "plan", "--stage", "prod"],
        )
        .unwrap_err();
        assert!(e.starts_with("FILE line 3: unknown key `clustr`"), "{e}");
        let e = run(
            "[stage.prod]\nstrategy = \"fast\"\n",
            &["efs2atlas", "plan", "--stage", "prod"],
        )
        .unwrap_err();
        assert!(e.starts_with("FILE line 2: [stage.prod] strategy:"), "{e}");
        assert!(e.contains("two-pass"), "{e}");
        let e = run(
            "[stage.prod]\natlas_uri = \"mongodb+srv://u:secret@h\"\n",
            &["efs2atlas", "plan", "--stage", "prod"],
        )
        .unwrap_err();
        assert!(e.contains("line 2") && e.contains("atlas_uri_env"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = run(
            "[stage.prod]\ndrop = true\n",
            &["efs2atlas", "migrate", "--stage", "prod"],
        )
        .unwrap_err();
        assert!(e.contains("give --drop on the command line"), "{e}");
        let e = run(
            "[stage.prod]\natlas_uri_env = \"EFS2ATLAS_TEST_UNSET_VAR\"\n",
            &["efs2atlas", "plan", "--stage", "prod"],
        )
        .unwrap_err();
        assert!(
            e.contains("EFS2ATLAS_TEST_UNSET_VAR, which is not set"),
            "{e}"
        );
        let e = run(FILE, &["efs2atlas", "plan", "--stage", "prod"]).unwrap_err();
        assert_eq!(e, "--stage prod: FILE has no [stage.prod] (it defines dev)");
        let e = run("[stages.dev]\n", &["efs2atlas", "plan", "--stage", "dev"]).unwrap_err();
        assert!(e.contains("only [stage.NAME] tables"), "{e}");
        let e = run("[stage.dev\n", &["efs2atlas", "plan", "--stage", "dev"]).unwrap_err();
        assert!(e.starts_with("FILE line 1:"), "{e}");
    }
}
