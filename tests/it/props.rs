//! Property tests (proptest; `cargo fuzz` needs nightly, which CI does not have) for the
//! parsers and the task-definition rewrite. PROPTEST_CASES raises the case count for a
//! longer run (see docs/reliability.md).

use aws_sdk_ecs::types::{
    ContainerCondition, ContainerDefinition, ContainerDependency, EfsVolumeConfiguration,
    HostVolumeProperties, KeyValuePair, MountPoint, PortMapping, Volume, VolumeFrom,
};
use efs2atlas::envmap::Template;
use efs2atlas::mongo::ns::{Namespace, Pattern};
use efs2atlas::secret::Secret;
use efs2atlas::taskdef::{
    CredentialTarget, EnvAssignment, Rewrite, TaskDefSpec, dangling_references, rewrite,
};
use efs2atlas::uri::{MongoUri, percent_encode};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // proptest reads PROPTEST_CASES itself; 256 by default keeps the suite quick.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Naive recursive glob: the reference the fast matcher must agree with.
fn naive_glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => naive_glob(&p[1..], s) || (!s.is_empty() && naive_glob(p, &s[1..])),
        (Some(a), Some(b)) if a == b => naive_glob(&p[1..], &s[1..]),
        _ => false,
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any input: parse returns, never panics, and a password in the text never shows in the
    /// error.
    #[test]
    fn uri_parse_never_panics_nor_leaks(rest in ".{0,60}", pw in "[A-Za-z0-9]{6,12}") {
        let text = format!("mongodb://u:ZZ{pw}ZZ@{rest}");
        match MongoUri::parse("--atlas-uri", &text) {
            Ok(u) => prop_assert!(!u.redacted().contains(&format!("ZZ{pw}ZZ")), "{}", u.redacted()),
            Err(e) => prop_assert!(!e.to_string().contains(&format!("ZZ{pw}ZZ")), "{e}"),
        }
        let _ = MongoUri::parse("--source-uri", &rest);
    }

    /// Whatever the user name, password and database hold, percent-encoding them gives a URI
    /// that parses back to the same parts, and the redacted form never shows the password.
    #[test]
    fn uri_round_trips_and_redacts(
        user in "\\PC{1,12}",
        pw in "\\PC{1,16}",
        hosts in prop::collection::vec(("[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}", prop::option::of(1u16..)), 1..4),
        db in prop::option::of("[A-Za-z0-9_-]{1,12}"),
        query in prop::option::of("[a-zA-Z]{1,8}=[a-z0-9]{1,8}"),
    ) {
        let hosts: Vec<String> = hosts.iter().map(|(h, p)| match p { Some(p) => format!("{h}:{p}"), None => h.clone() }).collect();
        let hosts = hosts.join(",");
        let mut text = format!("mongodb://{}:{}@{hosts}", percent_encode(&user), percent_encode(&pw));
        if db.is_some() || query.is_some() {
            text.push('/');
        }
        if let Some(d) = &db { text.push_str(d); }
        if let Some(q) = &query { text.push('?'); text.push_str(q); }
        let u = MongoUri::parse("--atlas-uri", &text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(u.user.as_deref(), Some(user.as_str()));
        prop_assert_eq!(u.password.as_ref().map(|p| p.expose()), Some(pw.as_str()));
        prop_assert_eq!(&u.hosts, &hosts);
        prop_assert_eq!(&u.db, &db);
        let red = u.redacted();
        // A password made only of characters that also occur in the rest could show up by
        // chance; require the encoded form to be absent when it is long enough to be specific.
        if pw.len() >= 4 && !text.replacen(&percent_encode(&pw), "", 1).contains(&percent_encode(&pw)) {
            prop_assert!(!red.contains(&percent_encode(&pw)), "{red}");
        }
        prop_assert!(red.contains(&hosts));
        // The redacted form is itself a valid URI.
        prop_assert!(MongoUri::parse("x", &red).is_ok(), "{red}");
    }

    /// Template parsing never panics, and a template is its text.
    #[test]
    fn template_parse_never_panics(text in "[{}a-z:@/ ]{0,30}") {
        if let Ok(t) = Template::parse(&text) {
            prop_assert_eq!(t.text(), text.as_str());
        }
    }

    /// Literal text with braces escaped, around fields, renders to exactly the literal text
    /// with the fields filled in; with masking, the password never appears.
    #[test]
    fn template_renders_literals_and_fields(
        parts in prop::collection::vec(prop_oneof![
            "\\PC{0,8}".prop_map(|s| (s, None)),
            prop::sample::select(vec!["uri", "user", "password", "host", "db"]).prop_map(|f| (String::new(), Some(f))),
        ], 0..8),
    ) {
        let atlas = MongoUri::parse("--atlas-uri", "mongodb+srv://app:Pw%3Asecret9@c0.x.mongodb.net/shop?retryWrites=true").unwrap();
        let mut text = String::new();
        let mut want = String::new();
        // The documented rule: after a literal `scheme://` the user, password and database
        // are percent-encoded; elsewhere every field renders as it is.
        let mut literal = String::new();
        for (lit, field) in &parts {
            match field {
                None => {
                    text.push_str(&lit.replace('{', "{{").replace('}', "}}"));
                    want.push_str(lit);
                    literal.push_str(lit);
                }
                Some(f) => {
                    text.push_str(&format!("{{{f}}}"));
                    let in_uri = literal.contains("://");
                    want.push_str(match (*f, in_uri) {
                        ("uri", _) => atlas.expose(),
                        ("user", _) => "app",
                        ("password", false) => "Pw:secret9",
                        ("password", true) => "Pw%3Asecret9",
                        ("host", _) => "c0.x.mongodb.net",
                        _ => "shop",
                    });
                }
            }
        }
        let t = Template::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let rendered = t.render(&atlas, Some("shop")).unwrap();
        prop_assert_eq!(rendered.expose(), want.as_str());
        let shown = t.render_shown(&atlas, Some("shop")).unwrap();
        if !parts.iter().any(|(l, _)| l.contains("secret9")) {
            prop_assert!(!shown.contains("secret9"), "{shown}");
        }
    }

    /// The namespace matcher agrees with a naive reference, whatever the pattern.
    #[test]
    fn pattern_matches_like_naive_glob(p in "[ab*.]{1,8}", db in "[ab.]{1,4}", coll in "[ab.]{1,4}") {
        let ns = Namespace::new(db, coll);
        if let Ok(pat) = Pattern::parse("--ns-include", &p) {
            prop_assert_eq!(pat.matches(&ns), naive_glob(p.as_bytes(), ns.to_string().as_bytes()), "{} vs {}", p, ns);
        }
    }
}

/// A random container that may point at the mongo container in every way ECS allows.
fn container(
    name: String,
    others: Vec<String>,
    vols: Vec<String>,
    seed: u8,
) -> ContainerDefinition {
    let mut b = ContainerDefinition::builder()
        .name(&name)
        .image(format!("img/{name}:{seed}"))
        .memory(128 + seed as i32)
        .essential(seed.is_multiple_of(2))
        .port_mappings(
            PortMapping::builder()
                .container_port(1000 + seed as i32)
                .build(),
        )
        .environment(
            KeyValuePair::builder()
                .name("KEEP")
                .value(format!("v{seed}"))
                .build(),
        )
        .command(format!("run-{seed}"));
    for (i, o) in others.iter().enumerate() {
        if (seed >> (i % 8)) & 1 == 1 {
            b = b.depends_on(
                ContainerDependency::builder()
                    .container_name(o)
                    .condition(ContainerCondition::Start)
                    .build()
                    .unwrap(),
            );
        }
        if (seed >> ((i + 3) % 8)) & 1 == 1 {
            b = b.links(format!("{o}:alias{i}"));
        }
        if (seed >> ((i + 5) % 8)) & 1 == 1 {
            b = b.volumes_from(
                VolumeFrom::builder()
                    .source_container(o)
                    .read_only(true)
                    .build(),
            );
        }
    }
    for (i, v) in vols.iter().enumerate() {
        if (seed >> ((i + 1) % 8)) & 1 == 1 {
            b = b.mount_points(
                MountPoint::builder()
                    .source_volume(v)
                    .container_path(format!("/{v}"))
                    .build(),
            );
        }
    }
    b.build()
}

fn spec_strategy() -> impl Strategy<Value = (TaskDefSpec, String)> {
    (
        2usize..6,
        1usize..5,
        prop::collection::vec(any::<u8>(), 6),
        0usize..6,
    )
        .prop_map(|(n, nv, seeds, mongo_at)| {
            let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let vols: Vec<String> = (0..nv).map(|i| format!("v{i}")).collect();
            let mongo = names[mongo_at % n].clone();
            let containers = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let others = names.iter().filter(|o| *o != name).cloned().collect();
                    container(name.clone(), others, vols.clone(), seeds[i])
                })
                .collect();
            let volumes = vols
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let b = Volume::builder().name(v);
                    if i % 2 == 0 {
                        b.efs_volume_configuration(
                            EfsVolumeConfiguration::builder()
                                .file_system_id(format!("fs-{i}"))
                                .build()
                                .unwrap(),
                        )
                        .build()
                    } else {
                        b.host(
                            HostVolumeProperties::builder()
                                .source_path(format!("/h{i}"))
                                .build(),
                        )
                        .build()
                    }
                })
                .collect();
            let spec = TaskDefSpec {
                family: "fam".into(),
                cpu: Some("512".into()),
                memory: Some("1024".into()),
                containers,
                volumes,
                ..TaskDefSpec::default()
            };
            (spec, mongo)
        })
}

/// Compares a container with the same one after the rewrite, ignoring the fields the rewrite
/// may change.
fn unrelated_fields(c: &ContainerDefinition) -> ContainerDefinition {
    let mut c = c.clone();
    c.depends_on = None;
    c.links = None;
    c.volumes_from = None;
    c.mount_points = None;
    c.environment = None;
    c.secrets = None;
    c
}

proptest! {
    #![proptest_config(config())]

    /// The rewrite never leaves a reference to the removed container or its private volumes,
    /// keeps every other container, volume and field, and sets the env it was asked to.
    #[test]
    fn rewrite_removes_only_mongo_and_its_references((spec, mongo) in spec_strategy(), secrets_manager in any::<bool>()) {
        let app = spec.containers.iter().find_map(|c| c.name.clone().filter(|n| *n != mongo)).unwrap();
        let rw = Rewrite {
            mongo_container: mongo.clone(),
            env: vec![
                EnvAssignment { container: app.clone(), name: "MONGODB_URL".into(), value: Secret::new("h.mongodb.net"), sensitive: false },
                EnvAssignment { container: app.clone(), name: "MONGODB_PASSWORD".into(), value: Secret::new("pw"), sensitive: true },
            ],
            images: vec![],
            credentials: if secrets_manager {
                CredentialTarget::SecretsManager { secret_arn: "arn:aws:secretsmanager:us-east-1:1:secret:s".into() }
            } else {
                CredentialTarget::Env
            },
        };
        let next = rewrite(&spec, &rw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(dangling_references(&next).is_empty(), "{:?}", dangling_references(&next));
        prop_assert!(next.container(&mongo).is_none());
        let dropped = spec.volumes_only_mounted_by(&mongo);
        for c in &next.containers {
            prop_assert!(!c.depends_on().iter().any(|d| d.container_name == mongo));
            prop_assert!(!c.links().iter().any(|l| l.split(':').next() == Some(mongo.as_str())));
            prop_assert!(!c.volumes_from().iter().any(|v| v.source_container.as_deref() == Some(mongo.as_str())));
            prop_assert!(!c.mount_points().iter().any(|m| m.source_volume.as_ref().is_some_and(|v| dropped.contains(v))));
            let before = spec.container(c.name.as_deref().unwrap()).unwrap();
            prop_assert_eq!(unrelated_fields(c), unrelated_fields(before));
            // References to anything else survive.
            let kept = |d: &&ContainerDependency| d.container_name != mongo;
            prop_assert_eq!(c.depends_on().iter().filter(kept).count(), before.depends_on().iter().filter(kept).count());
            prop_assert_eq!(
                c.mount_points().len(),
                before.mount_points().iter().filter(|m| !m.source_volume.as_ref().is_some_and(|v| dropped.contains(v))).count()
            );
            // The KEEP env var is never lost.
            prop_assert!(c.environment().iter().any(|kv| kv.name.as_deref() == Some("KEEP")));
        }
        prop_assert_eq!(next.containers.len(), spec.containers.len() - 1);
        // Volumes: exactly the mongo-private ones are gone, the others are unchanged.
        let want: Vec<&Volume> = spec.volumes.iter().filter(|v| !dropped.contains(v.name.as_ref().unwrap())).collect();
        prop_assert_eq!(next.volumes.iter().collect::<Vec<_>>(), want);
        prop_assert_eq!((&next.family, &next.cpu, &next.memory), (&spec.family, &spec.cpu, &spec.memory));
        let a = next.container(&app).unwrap();
        prop_assert!(a.environment().iter().any(|kv| kv.name.as_deref() == Some("MONGODB_URL") && kv.value.as_deref() == Some("h.mongodb.net")));
        let pw_in_env = a.environment().iter().any(|kv| kv.name.as_deref() == Some("MONGODB_PASSWORD"));
        prop_assert_eq!(pw_in_env, !secrets_manager, "password goes to secrets only in Secrets Manager mode");
    }
}
