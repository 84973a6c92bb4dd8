//! Which env vars of which app containers are rewritten to point at Atlas, and their new
//! values (real ones for the task definition, masked ones for the plan).

use std::collections::BTreeSet;

use crate::engine::options::{CredentialMode, PlanOptions};
use crate::engine::plan::model::{EnvMapping, Finding, finding, push_unique};
use crate::envmap::{EnvOverride, Field, Template, detect, is_mongo_uri};
use crate::error::Result;
use crate::taskdef::EnvAssignment;
use crate::uri::MongoUri;
use crate::world::{ContainerInfo, ShownValue, World};

/// The shown mapping and the real assignments.
pub type EnvPlan = (Vec<EnvMapping>, Vec<EnvAssignment>);

/// One env var that will be written, before rendering.
struct Entry<'a> {
    container: &'a str,
    name: String,
    template: Template,
    origin: &'static str,
    current: Option<&'a ShownValue>,
    current_in: &'static str,
}

/// Decides which env vars of which containers are rewritten, and renders them.
pub fn map_env(
    world: &World,
    opts: &PlanOptions,
    mongo: &str,
    blockers: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> Result<EnvPlan> {
    let td = &world.task_definition;
    let apps: Vec<&ContainerInfo> = td.containers.iter().filter(|c| c.name != mongo).collect();
    let mut entries = detected(&apps, warnings);
    let auto_containers: BTreeSet<&str> = entries.iter().map(|e| e.container).collect();
    for o in &opts.env {
        for t in override_targets(&apps, mongo, o, &auto_containers) {
            entries.retain(|e| !(e.container == t && e.name == o.name));
            entries.push(override_entry(&apps, t, o));
        }
    }
    if entries.is_empty() {
        blockers.push(finding(
            "no-app-env",
            &td.family,
            format!(
                "no env var of the app containers ({}) refers to MongoDB, so efs2atlas cannot tell how the app finds its database: pass --env NAME=TEMPLATE (e.g. --env MONGO_URI={{uri}})",
                apps.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let db = app_database(opts, &entries);
    credential_warnings(&entries, &opts.atlas, warnings);
    Ok(render(&entries, opts, db.as_deref(), blockers))
}

/// What the app may not be able to use as it is given: a bare password holding a character
/// URIs reserve (apps interpolate it into their connection string raw), and an SRV name where
/// an app may build `mongodb://HOST:PORT` (code written for a mongo container). Values stay
/// out of the message: only the variable is named.
fn credential_warnings(entries: &[Entry<'_>], atlas: &MongoUri, warnings: &mut Vec<Finding>) {
    for e in entries {
        let at = format!("{}/{}", e.container, e.name);
        let bare_password = e.template.text() == "{password}";
        if bare_password
            && atlas
                .password
                .as_ref()
                .is_some_and(|p| crate::envmap::has_uri_reserved(p.expose()))
        {
            push_unique(
                warnings,
                finding(
                    "password-reserved-characters",
                    &at,
                    format!(
                        "{} in container {} gets a password holding a character URIs reserve (: / ? # [ ] @ %): an app that builds its connection string by interpolation (mongodb+srv://${{USER}}:${{PASSWORD}}@…, as the seed's app does) breaks. Give the Atlas user a password without them, or have the app percent-encode it, or map the var to the whole connection string (--env {}={{uri}})",
                        e.name, e.container, e.name
                    ),
                ),
            );
        }
        let srv_host = e.template.uses(Field::Host)
            && atlas.scheme == "mongodb+srv"
            && !e.template.text().contains("mongodb+srv://");
        if srv_host {
            push_unique(
                warnings,
                finding(
                    "srv-host",
                    &at,
                    format!(
                        "{} in container {} gets the SRV name {}: right for an app that builds mongodb+srv://… from it (as the seed's app does), but an app that builds mongodb://HOST:27017 (code written for a mongo container) cannot reach Atlas that way. Then map the var to the whole connection string (--env {}={{uri}}) and have the app use it as it is",
                        e.name, e.container, atlas.hosts, e.name
                    ),
                ),
            );
        }
    }
}

/// The env vars and secret references that look like MongoDB settings.
fn detected<'a>(apps: &[&'a ContainerInfo], warnings: &mut Vec<Finding>) -> Vec<Entry<'a>> {
    let mut entries = Vec::new();
    for c in apps {
        for e in &c.environment {
            if let Some(t) = detect(&e.name, Some(e.value.expose())) {
                entries.push(Entry {
                    container: &c.name,
                    name: e.name.clone(),
                    template: t,
                    origin: "auto",
                    current: Some(&e.value),
                    current_in: "environment",
                });
            }
        }
        for s in &c.secrets {
            let Some(t) = detect(&s.name, None) else {
                continue;
            };
            if t.uses(Field::Uri) && s.name.to_ascii_uppercase().ends_with("URL") {
                warnings.push(finding(
                    "env-guess",
                    format!("{}/{}", c.name, s.name),
                    format!(
                        "{} in container {} is a secret reference, so its form is unknown; assuming a full connection string ({{uri}}). If it holds only a host, pass --env {}={{host}}",
                        s.name, c.name, s.name
                    ),
                ));
            }
            entries.push(Entry {
                container: &c.name,
                name: s.name.clone(),
                template: t,
                origin: "auto",
                current: None,
                current_in: "secrets",
            });
        }
    }
    entries
}

/// The containers an `--env` flag writes to: those that define the var, else those with
/// detected vars, else those linked to mongo, else the essential ones.
fn override_targets<'a>(
    apps: &[&'a ContainerInfo],
    mongo: &str,
    o: &EnvOverride,
    auto_containers: &BTreeSet<&'a str>,
) -> Vec<&'a str> {
    let defining: Vec<&str> = apps
        .iter()
        .filter(|c| {
            c.environment.iter().any(|e| e.name == o.name)
                || c.secrets.iter().any(|s| s.name == o.name)
        })
        .map(|c| c.name.as_str())
        .collect();
    if !defining.is_empty() {
        return defining;
    }
    if !auto_containers.is_empty() {
        return auto_containers.iter().copied().collect();
    }
    let linked: Vec<&str> = apps
        .iter()
        .filter(|c| {
            c.depends_on.iter().any(|d| d == mongo)
                || c.links.iter().any(|l| l.split(':').next() == Some(mongo))
        })
        .map(|c| c.name.as_str())
        .collect();
    if !linked.is_empty() {
        return linked;
    }
    apps.iter()
        .filter(|c| c.essential)
        .map(|c| c.name.as_str())
        .collect()
}

/// The entry an `--env` flag makes for container `t`.
fn override_entry<'a>(apps: &[&'a ContainerInfo], t: &'a str, o: &EnvOverride) -> Entry<'a> {
    let c = apps.iter().find(|c| c.name == t).copied();
    let env = c.and_then(|c| c.environment.iter().find(|e| e.name == o.name));
    let in_secrets = c.is_some_and(|c| c.secrets.iter().any(|s| s.name == o.name));
    Entry {
        container: c.map(|c| c.name.as_str()).unwrap_or(t),
        name: o.name.clone(),
        template: o.template.clone(),
        origin: "--env",
        current: env.map(|e| &e.value),
        current_in: if env.is_some() {
            "environment"
        } else if in_secrets {
            "secrets"
        } else {
            "new"
        },
    }
}

/// `{db}`: the Atlas URI's database, else the one the app uses now (when it is unambiguous).
fn app_database(opts: &PlanOptions, entries: &[Entry<'_>]) -> Option<String> {
    opts.atlas.db.clone().or_else(|| {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for e in entries {
            let Some(v) = e.current else { continue };
            if e.template.uses(Field::Db) && !v.expose().is_empty() && e.template.text() == "{db}" {
                seen.insert(v.expose().to_string());
            } else if is_mongo_uri(v.expose())
                && let Ok(u) = MongoUri::parse("env", v.expose())
                && let Some(d) = u.db
            {
                seen.insert(d);
            }
        }
        (seen.len() == 1).then(|| seen.into_iter().next().unwrap_or_default())
    })
}

/// Renders every entry; a template that cannot be filled is a blocker.
fn render(
    entries: &[Entry<'_>],
    opts: &PlanOptions,
    db: Option<&str>,
    blockers: &mut Vec<Finding>,
) -> EnvPlan {
    let mut mapping = Vec::new();
    let mut assignments = Vec::new();
    let use_secret = opts.credentials == CredentialMode::SecretsManager;
    for e in entries {
        let sensitive = e.template.is_sensitive(&opts.atlas);
        let (value, shown) = match (
            e.template.render(&opts.atlas, db),
            e.template.render_shown(&opts.atlas, db),
        ) {
            (Ok(v), Ok(s)) => (v, s),
            (Err(err), _) | (_, Err(err)) => {
                let f = if e.template.uses(Field::Db) && db.is_none() {
                    finding(
                        "no-database-name",
                        "--atlas-uri",
                        "the Atlas URI names no database and the app's current database name could not be read from its env vars: add /DBNAME to --atlas-uri",
                    )
                } else {
                    finding(
                        "env-template",
                        format!("{}/{}", e.container, e.name),
                        err.to_string(),
                    )
                };
                push_unique(blockers, f);
                continue;
            }
        };
        mapping.push(EnvMapping {
            container: e.container.to_string(),
            name: e.name.clone(),
            template: e.template.text().to_string(),
            origin: e.origin.to_string(),
            current: e.current.map(|v| v.shown().to_string()),
            current_in: e.current_in.to_string(),
            new: shown,
            sensitive,
            new_in: if sensitive && use_secret {
                "secrets".into()
            } else {
                "environment".into()
            },
        });
        assignments.push(EnvAssignment {
            container: e.container.to_string(),
            name: e.name.clone(),
            value,
            sensitive,
        });
    }
    (mapping, assignments)
}
