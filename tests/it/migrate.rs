//! `efs2atlas migrate`, `resume` and `status` end to end on the fixture world: moto for AWS,
//! a real mongod for the source Mongo (standalone, auth) and for "Atlas" (replica set, auth,
//! TLS; reached through --target-uri).

use std::time::{Duration, Instant};

use crate::common::{ATLAS_PASSWORD, Account, Cmd, Run, account, atlas_uri, snapshot};
use crate::mongod::Mongod;
use crate::proxy::FaultProxy;
use crate::sharedtier::SharedTier;
use crate::tcpfault::{Faults, TcpFault};
use crate::world::{self, Fixture, OLD_MONGO_PASSWORD};

pub(crate) struct Setup {
    pub acct: Account,
    pub fx: Fixture,
    pub src: Mongod,
    pub dst: Mongod,
    /// The tool reaches the target through this proxy (a clean link unless a test slows it).
    pub link: TcpFault,
    /// When set, the tool reaches the target through this shared-tier (M0/Flex) stand-in
    /// instead of [`Setup::link`].
    pub tier: Option<SharedTier>,
    pub dir: tempfile::TempDir,
    /// `--compressors none` for every run (see [`Setup::uncompressed`]).
    plain: std::sync::atomic::AtomicBool,
}

impl Setup {
    /// The URI the tool writes to (through [`Setup::link`]).
    pub fn target_uri(&self) -> String {
        match &self.tier {
            Some(t) => self.dst.uri_via(t.port),
            None => self.dst.uri_via(self.link.port),
        }
    }

    /// Slows the link to the target so a copy of a few MB lasts seconds (on loopback a real
    /// mongod takes it faster than a test can stop it part-way): ~1 MB/s in all, the proxy
    /// pacing each connection and a copy keeping up to eight inserts in flight.
    pub fn slow_link(&self) {
        self.uncompressed();
        self.link.set(Faults {
            bytes_per_sec: Some(125_000),
            ..Default::default()
        });
    }

    /// Every run sends its bytes as they are (`EFS2ATLAS_COMPRESSORS=none`, journaled for
    /// resume): a test that shapes the link by bytes means the data's bytes.
    pub fn uncompressed(&self) {
        self.plain.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What `EFS2ATLAS_COMPRESSORS` is for this setup's runs.
    pub fn wire(&self) -> &'static str {
        if self.plain.load(std::sync::atomic::Ordering::Relaxed) {
            "none"
        } else {
            "zstd,snappy,zlib"
        }
    }

    pub fn journal(&self) -> String {
        self.dir
            .path()
            .join("efs2atlas.journal.json")
            .display()
            .to_string()
    }

    pub fn args(&self) -> Vec<String> {
        [
            "migrate",
            "--cluster",
            &self.fx.cluster,
            "--service",
            &self.fx.service,
            "--source-uri",
            &self.src.uri(),
            "--target-uri",
            &self.target_uri(),
            "--journal",
            &self.journal(),
            "--deploy-timeout",
            "20s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn migrate(&self, extra: &[&str]) -> Run {
        let mut a = self.args();
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let uri = atlas_uri();
        self.acct.run_env(
            &a,
            &[
                ("EFS2ATLAS_ATLAS_URI", &uri),
                ("EFS2ATLAS_COMPRESSORS", self.wire()),
            ],
        )
    }

    /// `efs2atlas migrate` with these arguments, as this account, with the Atlas URI in the env.
    pub fn cmd(&self, args: &[String]) -> Cmd {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Cmd::new(&args)
            .envs(&self.acct.env)
            .env("EFS2ATLAS_ATLAS_URI", atlas_uri())
            .env("EFS2ATLAS_COMPRESSORS", self.wire())
    }

    pub fn resume(&self) -> Run {
        let uri = atlas_uri();
        let (src, dst) = (self.src.uri(), self.target_uri());
        self.acct.run_env(
            &["resume", "--journal", &self.journal(), "--yes", "--json"],
            &[
                ("EFS2ATLAS_ATLAS_URI", &uri),
                ("EFS2ATLAS_SOURCE_URI", &src),
                ("EFS2ATLAS_TARGET_URI", &dst),
            ],
        )
    }

    fn journal_text(&self) -> String {
        std::fs::read_to_string(self.journal()).unwrap_or_default()
    }

    pub fn journal_json(&self) -> serde_json::Value {
        crate::common::journal_at(self.journal())
    }

    /// The app's credentials secret as ECS hands it to the app.
    pub async fn app_secret(&self) -> serde_json::Value {
        let sm = aws_sdk_secretsmanager::Client::new(&self.acct.conf);
        let stored = sm
            .get_secret_value()
            .secret_id("efs2atlas/goals-cluster/goals-service")
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap();
        serde_json::from_str(&stored).unwrap()
    }

    /// The service still runs the revision it ran before (nothing deployed).
    pub async fn assert_not_deployed(&self) {
        let ecs = aws_sdk_ecs::Client::new(&self.acct.conf);
        let svc = ecs
            .describe_services()
            .cluster(&self.fx.cluster)
            .services(&self.fx.service)
            .send()
            .await
            .unwrap();
        assert_eq!(
            svc.services()[0].task_definition.as_deref(),
            Some(self.fx.task_definition_arn.as_str())
        );
    }
}

/// The fixture with its one mongo task running, and `docs` more documents in the source.
pub(crate) async fn setup(docs: usize) -> Setup {
    setup_on(None, docs).await
}

/// The same, the source running MongoDB `version` (see [`Mongod::source_version`]) when given.
pub(crate) async fn setup_on(version: Option<&str>, docs: usize) -> Setup {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "goals").await;
    let (src, dst) = crate::common::off_runtime(|| {
        let src = match version {
            Some(v) => Mongod::source_version(v),
            None => Mongod::source(),
        };
        (src, Mongod::target())
    });
    world::seed_mongo(&src.uri()).await;
    if docs > 0 {
        let c = mongodb::Client::with_uri_str(src.uri()).await.unwrap();
        let coll = c
            .database("goals")
            .collection::<mongodb::bson::Document>("history");
        let batch: Vec<_> = (0..docs).map(|i| mongodb::bson::doc! {"_id": mongodb::bson::oid::ObjectId::new(), "i": i as i32, "pad": "h".repeat(80)}).collect();
        coll.insert_many(batch).await.unwrap();
    }
    let link = TcpFault::start(dst.port());
    Setup {
        acct,
        fx,
        src,
        dst,
        link,
        tier: None,
        dir: tempfile::tempdir().unwrap(),
        plain: Default::default(),
    }
}

/// A proxy in front of moto under which the service never gets steady on the revision
/// efs2atlas registers: DescribeServices reports no running task while the service runs it.
pub(crate) async fn never_steady(s: &Setup) -> FaultProxy {
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    let (base, rev) = s.fx.task_definition_arn.rsplit_once(':').unwrap();
    let next = format!("{base}:{}\"", rev.parse::<i32>().unwrap() + 1);
    for from in ["\"runningCount\": 1", "\"runningCount\":1"] {
        proxy.rewrite("DescribeServices", &next, from, &from.replace('1', "0"));
    }
    proxy
}

pub(crate) fn secrets() -> [&'static str; 4] {
    [
        ATLAS_PASSWORD,
        OLD_MONGO_PASSWORD,
        crate::mongod::SOURCE_PASSWORD,
        crate::mongod::TARGET_PASSWORD,
    ]
}

/// Asserts the "after" world: service on a revision without mongo, storage gone, data equal.
pub(crate) async fn assert_migrated(s: &Setup) {
    let ecs = aws_sdk_ecs::Client::new(&s.acct.conf);
    let svc = ecs
        .describe_services()
        .cluster(&s.fx.cluster)
        .services(&s.fx.service)
        .send()
        .await
        .unwrap();
    let td_arn = svc.services()[0].task_definition.clone().unwrap();
    assert_ne!(td_arn, s.fx.task_definition_arn);
    let td = ecs
        .describe_task_definition()
        .task_definition(&td_arn)
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    let names: Vec<_> = td
        .container_definitions()
        .iter()
        .map(|c| c.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["backend"]);
    assert!(td.volumes().is_empty());
    let b = &td.container_definitions()[0];
    assert!(b.depends_on().is_empty());
    assert_eq!(
        b.secrets().len(),
        1,
        "the password comes from Secrets Manager"
    );
    let snap = snapshot(&s.acct.conf).await;
    assert_eq!(snap["file_systems"], serde_json::json!([]));
    let sgs = snap["security_groups"].to_string();
    assert!(!sgs.contains(&s.fx.nfs_sg) && sgs.contains(&s.fx.task_sg));
    assert_eq!(
        snap["secrets"],
        serde_json::json!(["efs2atlas/goals-cluster/goals-service"])
    );
    let v = Cmd::verify(&s.src.uri(), &s.dst.uri()).run();
    assert!(v.code == 0, "target verifies: {}", v.stdout);
    let j = s.journal_text();
    for secret in secrets() {
        assert!(!j.contains(secret), "journal leaks {secret}");
    }
}

#[tokio::test]
async fn migrate_yes_runs_the_whole_migration() {
    let s = setup(0).await;
    let r = s.migrate(&["--yes", "--json"]);
    r.assert_no_secret(&secrets());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    let m = &v["migration"];
    assert_eq!(m["ok"], true);
    assert!(
        m["secret_arn"]
            .as_str()
            .unwrap()
            .contains("efs2atlas/goals-cluster/goals-service")
    );
    assert!(
        m["deleted"].to_string().contains(&s.fx.file_system_id),
        "{m:#}"
    );
    assert_eq!(m["freeze"]["confirmed"], true, "{m:#}");
    assert!(!r.stderr.contains("NOT confirmed"), "{}", r.stderr);
    assert!(m["copy"]["docs"].as_u64().unwrap() >= 570);
    assert_migrated(&s).await;

    let st = s.acct.run(&["status", "--journal", &s.journal(), "--json"]);
    assert_eq!(st.code, 0);
    assert_eq!(st.json()["status"]["migration"]["ok"], true);
    let again = s.migrate(&["--yes"]);
    assert_eq!(again.code, 3, "a finished journal is not reused");
    assert!(
        again.stderr.contains("finished migration"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn dry_run_and_missing_yes_change_nothing() {
    let s = setup(0).await;
    let before = snapshot(&s.acct.conf).await;
    let r = s.migrate(&["--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Steps `efs2atlas migrate` would run"));
    r.assert_no_secret(&secrets());
    let r = s.migrate(&[]);
    assert_eq!(r.code, 3, "no terminal and no --yes: {}", r.stderr);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    r.assert_no_secret(&secrets());
    assert_eq!(before, snapshot(&s.acct.conf).await);
    assert!(
        !std::path::Path::new(&s.journal()).exists(),
        "no journal either"
    );
    let c = mongodb::Client::with_uri_str(s.dst.uri()).await.unwrap();
    assert!(
        c.list_database_names()
            .await
            .unwrap()
            .iter()
            .all(|d| ["admin", "local", "config"].contains(&d.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_rolls_back_and_unlocks_the_source() {
    // Not steady: moto keeps running < desired, so the new revision never settles.
    let s = setup(0).await;
    let proxy = never_steady(&s).await;
    let mut a = s.args();
    let i = a.iter().position(|x| x == "20s").unwrap();
    a[i] = "2s".into();
    a.extend(["--yes".to_string()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let uri = atlas_uri();
    let r = tokio::task::block_in_place(|| {
        s.acct.run_env(
            &a,
            &[
                ("EFS2ATLAS_ATLAS_URI", &uri),
                ("AWS_ENDPOINT_URL", &proxy.url),
            ],
        )
    });
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("rolled back") && r.stderr.contains("source unlocked"),
        "{}",
        r.stderr
    );
    r.assert_no_secret(&secrets());
    s.assert_not_deployed().await;
    let j = s.journal_json();
    assert_eq!(j["migrate"]["freeze"]["released"], true);
    assert_eq!(j["migrate"]["steps"]["deploy"]["status"], "failed");
    let snap = snapshot(&s.acct.conf).await;
    assert_eq!(
        snap["file_systems"].as_array().unwrap().len(),
        1,
        "nothing deleted after a failed cutover"
    );

    // The old app writes again while the operator looks into it...
    let c = mongodb::Client::with_uri_str(s.src.uri()).await.unwrap();
    c.database("goals")
        .collection::<mongodb::bson::Document>("late")
        .insert_one(mongodb::bson::doc! {"_id": "written-after-the-rollback", "x": 1})
        .await
        .unwrap();
    // ...then fixes the service and resumes: the copy catches up before anything deploys.
    drop(proxy);
    let r = tokio::task::block_in_place(|| s.resume());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("freezing it again"), "{}", r.stderr);
    let m = &r.json()["migration"];
    assert_eq!(m["sync"]["inserted"], 1, "{m:#}");
    assert_migrated(&s).await;
}

/// Two-pass end to end: an app keeps writing during the bulk copy and on into the freeze. The
/// real fsync lock blocks its writes (the report says confirmed); every write the source
/// acknowledged is in the target after the run, and the target equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_migrate_catches_writes_made_during_the_copy() {
    let s = setup(30_000).await;
    let mut child = spawn(&s, None);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let uri = s.src.uri();
    let (flag, log) = (stop.clone(), acked.clone());
    let writer = tokio::spawn(async move {
        let c = mongodb::Client::with_uri_str(uri).await.unwrap();
        let coll = c
            .database("goals")
            .collection::<mongodb::bson::Document>("history");
        let mut n = 0i64;
        let mut blocked = false;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let write = async {
                coll.insert_one(mongodb::bson::doc! {"_id": format!("late-{n}"), "late": n})
                    .await?;
                coll.update_one(
                    mongodb::bson::doc! {"i": (n * 97 % 30_000) as i32},
                    mongodb::bson::doc! {"$set": {"edited": n}},
                )
                .await
            };
            // Under the lock a write waits (for ever: the old source is never unlocked after
            // a successful cutover); the writer notes that and stops.
            match tokio::time::timeout(Duration::from_secs(5), write).await {
                Ok(r) => {
                    r.unwrap();
                    log.lock().unwrap().push(n);
                }
                Err(_) => {
                    blocked = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        blocked
    });
    wait_for(
        &s,
        "the sync",
        |j| !j["migrate"]["steps"]["sync"].is_null(),
        &mut child,
    )
    .await;
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    let log = std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default();
    assert!(status.success(), "{log}");
    let blocked = writer.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(blocked, "the freeze blocked the app's writes");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "the app wrote during the copy: {}",
        acked.len()
    );
    let j = s.journal_json();
    assert_eq!(j["migrate"]["freeze"]["confirmed"], true);
    let sync = &j["migrate"]["results"]["sync"];
    assert!(
        sync["inserted"].as_u64().unwrap() > 0 || sync["replaced"].as_u64().unwrap() > 0,
        "sync patched the writes made during the copy: {sync}"
    );
    // Every acknowledged write is in the target.
    let t = mongodb::Client::with_uri_str(s.dst.uri()).await.unwrap();
    let th = t
        .database("goals")
        .collection::<mongodb::bson::Document>("history");
    for n in &acked {
        assert!(
            th.find_one(mongodb::bson::doc! {"_id": format!("late-{n}")})
                .await
                .unwrap()
                .is_some(),
            "acknowledged write late-{n} is missing from the target"
        );
    }
    let r = s.acct.run(&["status", "--journal", &s.journal()]);
    assert!(
        r.stdout.contains("bulk copy with writes live")
            || r.stderr.contains("bulk copy with writes live"),
        "the report compares the freeze with the copy: {}{}",
        r.stdout,
        r.stderr
    );
    assert_migrated(&s).await;
}

pub(crate) async fn wait_for(
    s: &Setup,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
    child: &mut std::process::Child,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; journal: {}\nchild stderr: {}",
            s.journal_text(),
            std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default()
        );
        if cond(&s.journal_json()) {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "migrate exited ({st}) before {what}; journal: {}",
                s.journal_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn spawn(s: &Setup, endpoint: Option<&str>) -> std::process::Child {
    let mut c = s.cmd(&s.args()).yes();
    if let Some(e) = endpoint {
        c = c.env("AWS_ENDPOINT_URL", e);
    }
    c.log_to(s.dir.path().join("child.log")).spawn()
}

#[tokio::test]
async fn killed_during_copy_then_resume_converges() {
    let s = setup(40_000).await;
    s.slow_link();
    let mut child = spawn(&s, None);
    wait_for(
        &s,
        "the copy to be part-way",
        |j| {
            j["copy"]["collections"]["goals.history"]["docs"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
        &mut child,
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Journaled as running, but no process runs it: status says stopped, not running.
    let st = s.acct.run(&["status", "--journal", &s.journal()]);
    assert!(
        st.stdout.contains("copy       stopped") && !st.stdout.contains("in progress"),
        "{}",
        st.stdout
    );
    let st = s.acct.run(&["status", "--journal", &s.journal(), "--json"]);
    assert_eq!(st.json()["status"]["active"], serde_json::Value::Null);
    let r = s.resume();
    r.assert_no_secret(&secrets());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["migration"]["ok"], true);
    assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_cleanup_then_resume_converges() {
    let s = setup(0).await;
    // AWS holds on to the security group for a while: the run is still retrying when killed.
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_ec2_error("Action=DeleteSecurityGroup", 1000, "DependencyViolation");
    let mut child = spawn(&s, Some(&proxy.url));
    wait_for(
        &s,
        "cleanup to start",
        |j| j["migrate"]["steps"]["cleanup"]["status"] == "running",
        &mut child,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.count("Action=DeleteSecurityGroup") == 0 {
        assert!(
            Instant::now() < deadline,
            "never reached the security group; journal: {}\nchild stderr: {}",
            s.journal_text(),
            std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        snapshot(&s.acct.conf).await["file_systems"],
        serde_json::json!([]),
        "the EFS went first"
    );
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

#[tokio::test]
async fn sigint_during_copy_saves_and_says_how_to_resume() {
    let s = setup(40_000).await;
    // Slower than slow_link: the signal must land well before the last batch, even on a
    // loaded CI machine (at 2 MB/s it once arrived as the collection finished). Per
    // connection: the copy keeps up to eight inserts in flight.
    s.uncompressed();
    s.link.set(Faults {
        bytes_per_sec: Some(150_000),
        ..Default::default()
    });
    let mut child = s.cmd(&s.args()).yes().piped().spawn();
    wait_for(
        &s,
        "the copy to be part-way",
        |j| {
            j["copy"]["collections"]["goals.history"]["docs"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
        &mut child,
    )
    .await;
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Run = out.into();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        // Two-pass: the bulk copy runs before the freeze, so the source is not locked.
        r.stderr.contains("efs2atlas resume --journal") && !r.stderr.contains("write-locked"),
        "{}",
        r.stderr
    );
    r.assert_no_secret(&secrets());
    // The copy stopped at a batch boundary (the batches already in flight were let finish:
    // this collection may be whole, the copy step is not done).
    let j = s.journal_json();
    assert_ne!(j["migrate"]["steps"]["copy"]["status"], "done", "{j:#}");
    assert!(
        j["copy"]["collections"]["goals.history"]["docs"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

#[tokio::test]
async fn a_second_run_on_the_same_journal_is_refused_and_named() {
    let s = setup(40_000).await;
    let mut child = spawn(&s, None);
    wait_for(
        &s,
        "the copy to start",
        |j| {
            j["copy"]["collections"]["goals.history"]["docs"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
        &mut child,
    )
    .await;
    let r = s.resume();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("in use by `efs2atlas migrate`")
            && r.stderr.contains(&format!("pid {}", child.id())),
        "{}",
        r.stderr
    );
    let r = s.migrate(&["--yes"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("in use by"), "{}", r.stderr);
    child.kill().unwrap();
    child.wait().unwrap();
    // The holder is gone: its lock is taken over.
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

/// Sends `signal` to a migrate once `cond` holds, and checks it stops cleanly and resumes.
async fn signal_when(
    s: &Setup,
    signal: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
    endpoint: Option<&str>,
    extra: &[&str],
) {
    let mut a = s.args();
    a.push("--yes".into());
    for pair in extra.chunks(2) {
        match a.iter().position(|x| x == pair[0]) {
            Some(i) => a[i + 1] = pair[1].to_string(),
            None => a.extend(pair.iter().map(|x| x.to_string())),
        }
    }
    let mut c = s.cmd(&a);
    if let Some(e) = endpoint {
        c = c.env("AWS_ENDPOINT_URL", e);
    }
    let mut child = c.piped().spawn();
    wait_for(s, what, cond, &mut child).await;
    std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 5, "{what}: {}", r.stderr);
    assert!(
        r.stderr.contains("efs2atlas resume --journal"),
        "{}",
        r.stderr
    );
    r.assert_no_secret(&secrets());
    let j = s.journal_json();
    assert!(
        j["migrate"]["steps"].is_object(),
        "journal still readable: {j}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_deploy_wait_then_resume() {
    // Not steady yet: the deploy waits; SIGTERM stops the wait (the deployment itself goes on in ECS).
    let s = setup(0).await;
    let proxy = never_steady(&s).await;
    signal_when(
        &s,
        "-TERM",
        "the deploy wait",
        |j| j["migrate"]["steps"]["deploy"]["status"] == "running",
        Some(&proxy.url),
        &["--deploy-timeout", "60s"],
    )
    .await;
    drop(proxy);
    let r = tokio::task::block_in_place(|| s.resume());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

// The proxy lives in this process: a blocking wait must not stall its runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_cleanup_then_resume() {
    let s = setup(0).await;
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_ec2_error("Action=DeleteSecurityGroup", 1000, "DependencyViolation");
    signal_when(
        &s,
        "-TERM",
        "cleanup",
        |j| j["migrate"]["steps"]["cleanup"]["status"] == "running",
        Some(&proxy.url),
        &[],
    )
    .await;
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

/// SIGINT or SIGTERM (alternating) as each step starts: the run stops at that step or the
/// next boundary with exit 5 and "resume with …", the journal names a consistent place, and
/// `resume` finishes. AWS calls go through a 40 ms latency proxy so short steps are catchable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_at_every_step_stops_cleanly_then_resume_finishes() {
    let steps = crate::migrate_steps();
    // Each run is a task of its own (spawned when buffer_unordered polls it).
    let runs = steps.iter().enumerate().map(|(i, step)| {
        let signal = if i % 2 == 0 { "-INT" } else { "-TERM" };
        tokio::spawn(async move {
            let s = setup(3000).await;
            let proxy = FaultProxy::start(&crate::common::moto()).await;
            proxy.add_latency("", Duration::from_millis(40));
            let mut child = spawn(&s, Some(&proxy.url));
            let at = steps.iter().position(|x| x == step).unwrap();
            // The step started (or, for a step too short to see, already passed).
            let started = |j: &serde_json::Value| {
                steps[at..]
                    .iter()
                    .any(|x| !j["migrate"]["steps"][*x].is_null())
            };
            wait_for(&s, &format!("step {step}"), started, &mut child).await;
            std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            let status = tokio::task::block_in_place(|| child.wait()).unwrap();
            let log = std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default();
            let j = s.journal_json();
            let stopped_at = steps.iter().position(|x| {
                j["migrate"]["steps"][*x]["status"] != "done"
                    && j["migrate"]["steps"][*x]["status"] != "skipped"
            });
            match stopped_at {
                Some(p) => {
                    assert_eq!(status.code(), Some(5), "{signal} in {step}: {log}");
                    assert!(
                        p >= at,
                        "{signal} in {step}: stopped before it, at {}",
                        steps[p]
                    );
                    assert!(
                        log.contains("efs2atlas resume --journal"),
                        "{signal} in {step}: {log}"
                    );
                    // The step a signal stopped says so (none when it came between steps).
                    assert!(
                        ["interrupted", "failed", "not started"].contains(
                            &j["migrate"]["steps"][steps[p]]["status"]
                                .as_str()
                                .unwrap_or("not started")
                        ),
                        "{signal} in {step}: {j}"
                    );
                }
                // The signal came as the last step finished its last call.
                None => assert_eq!(status.code(), Some(0), "{signal} in {step}: {log}"),
            }
            if let Some(p) = stopped_at {
                let gone = snapshot(&s.acct.conf).await["file_systems"]
                    .as_array()
                    .unwrap()
                    .is_empty();
                assert!(
                    !gone || steps[p] == "cleanup",
                    "{signal} in {step}: EFS deleted before cleanup"
                );
                let r = tokio::task::block_in_place(|| s.resume());
                assert_eq!(r.code, 0, "{signal} in {step}: {}\n{}", r.stdout, r.stderr);
            }
            assert_migrated(&s).await;
            (
                step.to_string(),
                stopped_at.map(|p| steps[p]).unwrap_or("finished"),
            )
        })
    });
    use futures_util::StreamExt;
    let stops: Vec<_> = futures_util::stream::iter(runs)
        .buffer_unordered(3)
        .map(|r| r.expect("a signal run panicked"))
        .collect()
        .await;
    println!("signals: {stops:?}");
}

/// The preflight's copy estimate writes a scratch collection into the target; a run killed in
/// the middle of it leaves one behind. That must neither stop a migration (it is outside every
/// database the migration compares) nor outlive the next preflight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_collection_left_by_a_killed_run_is_harmless_and_removed() {
    let s = setup(500).await;
    let admin = crate::mongod::client(&s.dst.admin_uri()).await;
    admin
        .database("efs2atlas_probe")
        .collection::<mongodb::bson::Document>("probe_4242")
        .insert_one(mongodb::bson::doc! {"_id": 1})
        .await
        .unwrap();
    let r = s.migrate(&["--yes", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("estimated at ~") && r.stderr.contains("measured here"),
        "{}",
        r.stderr
    );
    assert_migrated(&s).await;
    let left = admin
        .database("efs2atlas_probe")
        .list_collection_names()
        .await
        .unwrap();
    assert!(left.is_empty(), "probe collections left: {left:?}");
}
