//! Test harness: the running test world (moto), one moto account per test, and the real
//! binary run as a subprocess. Real mongods for each test are in `support/mongod.rs`.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::Credentials;

/// The password every test's Atlas URI carries; no output may ever contain it.
pub const ATLAS_PASSWORD: &str = "Atl4s-S3cret-pw";

/// A plausible Atlas URI (never dialed by plan).
pub fn atlas_uri() -> String {
    format!(
        "mongodb+srv://app_user:{ATLAS_PASSWORD}@cluster0.ab1cd.mongodb.net/goals?retryWrites=true&w=majority"
    )
}

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: the integration tests need the local test world. Run them with scripts/test, or `scripts/test-env up && eval \"$(scripts/test-env env)\"` first")
    })
}

/// moto's base URL (loopback).
pub fn moto() -> String {
    need("EFS2ATLAS_TEST_MOTO")
}

/// One isolated moto account with credentials the SDK and the binary both use.
pub struct Account {
    /// 12-digit account id.
    pub id: String,
    /// SDK config for fixtures and assertions.
    pub conf: SdkConfig,
    /// Env vars that point the binary at moto as this account.
    pub env: Vec<(String, String)>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh account: STS AssumeRole into a role ARN of a new account id, whose keys moto maps
/// to that account. The binary needs no test-only code path to use it.
pub async fn account() -> Account {
    let endpoint = moto();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let id = format!(
        "{:012}",
        (nanos / 1000 + n * 7_919 + std::process::id() as u64 * 104_729) % 1_000_000_000_000
    );
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let sts = aws_sdk_sts::Client::new(&base);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{id}:role/efs2atlas-test"))
        .role_session_name("efs2atlas-test")
        .send()
        .await
        .expect("assume role in moto");
    let c = out.credentials.expect("credentials");
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            Some(c.session_token.clone()),
            None,
            "test",
        ))
        .load()
        .await;
    let env = vec![
        ("AWS_ENDPOINT_URL".into(), endpoint),
        ("AWS_ACCESS_KEY_ID".into(), c.access_key_id),
        ("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key),
        ("AWS_SESSION_TOKEN".into(), c.session_token),
        ("AWS_REGION".into(), "us-east-1".into()),
    ];
    Account { id, conf, env }
}

/// `program` with a clean environment (no user AWS config leaks in).
pub fn clean(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1");
    c
}

/// The binary under test with a clean environment and no input (`EFS2ATLAS_BIN` picks
/// another build, e.g. the release binary for the benchmarks).
pub fn bin() -> Command {
    let exe = std::env::var("EFS2ATLAS_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_efs2atlas").to_string());
    let mut c = clean(&exe);
    c.stdin(Stdio::null());
    c
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts no output contains any of `secrets`.
    pub fn assert_no_secret(&self, secrets: &[&str]) {
        for s in secrets {
            assert!(
                !self.stdout.contains(s),
                "stdout leaks a secret {s:?}:\n{}",
                self.stdout
            );
            assert!(
                !self.stderr.contains(s),
                "stderr leaks a secret {s:?}:\n{}",
                self.stderr
            );
        }
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Account {
    /// Runs the binary as this account.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs the binary as this account with extra env vars.
    pub fn run_env(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut c = bin();
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.envs(extra.iter().copied());
        c.args(args);
        off_runtime(|| output_within(&mut c, RUN_DEADLINE))
    }
}

/// How long one run of the binary may take in a test before it counts as hung.
pub const RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs `c` with its output collected, killing it (kill -9) and failing the test with what it
/// printed when it is still running after `limit`.
pub fn output_within(c: &mut Command, limit: std::time::Duration) -> Run {
    use std::io::Read;
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run efs2atlas");
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut out);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for efs2atlas") {
            break Some(st);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(st) => Run {
            code: st.code().unwrap_or(-1),
            stdout,
            stderr,
        },
        None => panic!(
            "efs2atlas was still running after {limit:?} (killed): a hang.\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}

/// A normalized picture of the AWS resources efs2atlas could touch, for "nothing changed"
/// assertions (moto's own data.json changes on mere reads).
pub async fn snapshot(conf: &SdkConfig) -> serde_json::Value {
    use serde_json::json;
    let ecs = aws_sdk_ecs::Client::new(conf);
    let efs = aws_sdk_efs::Client::new(conf);
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let sm = aws_sdk_secretsmanager::Client::new(conf);
    let iam = aws_sdk_iam::Client::new(conf);
    let mut tds = Vec::new();
    for status in [
        aws_sdk_ecs::types::TaskDefinitionStatus::Active,
        aws_sdk_ecs::types::TaskDefinitionStatus::Inactive,
    ] {
        let out = ecs
            .list_task_definitions()
            .status(status.clone())
            .send()
            .await
            .unwrap();
        for arn in out.task_definition_arns() {
            tds.push(format!("{arn} {}", status.as_str()));
        }
    }
    tds.sort();
    let mut services = Vec::new();
    for c in ecs.list_clusters().send().await.unwrap().cluster_arns() {
        let names = ecs
            .list_services()
            .cluster(c)
            .send()
            .await
            .unwrap()
            .service_arns()
            .to_vec();
        if names.is_empty() {
            continue;
        }
        for s in ecs
            .describe_services()
            .cluster(c)
            .set_services(Some(names))
            .send()
            .await
            .unwrap()
            .services()
        {
            services.push(json!([
                s.service_arn,
                s.task_definition,
                s.desired_count,
                s.status
            ]));
        }
    }
    let mut fss = Vec::new();
    for f in efs
        .describe_file_systems()
        .send()
        .await
        .unwrap()
        .file_systems()
    {
        let mts = efs
            .describe_mount_targets()
            .file_system_id(&f.file_system_id)
            .send()
            .await
            .unwrap();
        let mut mt: Vec<String> = mts
            .mount_targets()
            .iter()
            .map(|m| m.mount_target_id.clone())
            .collect();
        mt.sort();
        let aps = efs
            .describe_access_points()
            .file_system_id(&f.file_system_id)
            .send()
            .await
            .unwrap();
        let mut ap: Vec<String> = aps
            .access_points()
            .iter()
            .filter_map(|a| a.access_point_id.clone())
            .collect();
        ap.sort();
        fss.push(json!([f.file_system_id, mt, ap]));
    }
    fss.sort_by_key(|v| v.to_string());
    let mut sgs = Vec::new();
    for g in ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        let rules = |ps: &[aws_sdk_ec2::types::IpPermission]| -> Vec<String> {
            let mut v: Vec<String> = ps
                .iter()
                .map(|p| {
                    let groups: Vec<String> = p
                        .user_id_group_pairs()
                        .iter()
                        .filter_map(|x| x.group_id.clone())
                        .collect();
                    let cidrs: Vec<String> = p
                        .ip_ranges()
                        .iter()
                        .filter_map(|x| x.cidr_ip.clone())
                        .collect();
                    format!(
                        "{:?} {:?}-{:?} {groups:?} {cidrs:?}",
                        p.ip_protocol, p.from_port, p.to_port
                    )
                })
                .collect();
            v.sort();
            v
        };
        sgs.push(json!([
            g.group_id,
            g.group_name,
            rules(g.ip_permissions()),
            rules(g.ip_permissions_egress())
        ]));
    }
    sgs.sort_by_key(|v| v.to_string());
    let mut secrets: Vec<String> = sm
        .list_secrets()
        .send()
        .await
        .unwrap()
        .secret_list()
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();
    secrets.sort();
    let mut roles = Vec::new();
    for r in iam.list_roles().send().await.unwrap().roles() {
        let pols = iam
            .list_role_policies()
            .role_name(&r.role_name)
            .send()
            .await
            .unwrap();
        roles.push(json!([r.role_name, pols.policy_names()]));
    }
    roles.sort_by_key(|v| v.to_string());
    json!({"task_definitions": tds, "services": services, "file_systems": fss, "security_groups": sgs, "secrets": secrets, "roles": roles})
}

/// The body of the journal at `path` (inside its checksummed envelope); null when there is
/// no readable journal there (yet).
pub fn journal_at(path: impl AsRef<std::path::Path>) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|mut v| v["journal"].take())
        .unwrap_or_default()
}

/// Runs blocking work (a subprocess, a server start) off the async runtime's workers when
/// inside a multi-threaded one, so the test's other tasks (kill timers, proxies) stay on time.
pub fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A run of the binary, built like the command line it stands for:
/// `Cmd::copy(&src, &dst).journal(&path).json().run()`.
pub struct Cmd {
    cmd: Command,
}

impl Cmd {
    /// Any command line.
    pub fn new(args: &[&str]) -> Cmd {
        let mut cmd = bin();
        cmd.args(args);
        Cmd { cmd }
    }

    /// A data command (`copy`, `verify`, `sync`) from `source` to `target`.
    fn data(command: &str, source: &str, target: &str) -> Cmd {
        Cmd::new(&[command, "--source-uri", source, "--target-uri", target])
    }

    /// `efs2atlas copy`.
    pub fn copy(source: &str, target: &str) -> Cmd {
        Cmd::data("copy", source, target)
    }

    /// `efs2atlas verify`.
    pub fn verify(source: &str, target: &str) -> Cmd {
        Cmd::data("verify", source, target)
    }

    /// `efs2atlas sync`.
    pub fn sync(source: &str, target: &str) -> Cmd {
        Cmd::data("sync", source, target)
    }

    /// `--journal PATH`.
    pub fn journal(self, path: impl AsRef<std::path::Path>) -> Cmd {
        let p = path.as_ref().display().to_string();
        self.args(&["--journal", &p])
    }

    /// `--json`.
    pub fn json(self) -> Cmd {
        self.args(&["--json"])
    }

    /// `--yes`.
    pub fn yes(self) -> Cmd {
        self.args(&["--yes"])
    }

    /// More arguments, as written.
    pub fn args(mut self, args: &[&str]) -> Cmd {
        self.cmd.args(args);
        self
    }

    /// Runs in `dir` (where default journals land).
    pub fn dir(mut self, dir: impl AsRef<std::path::Path>) -> Cmd {
        self.cmd.current_dir(dir);
        self
    }

    /// Output goes nowhere (for runs that are killed part-way).
    pub fn quiet(mut self) -> Cmd {
        self.cmd.stdout(Stdio::null()).stderr(Stdio::null());
        self
    }

    /// Output goes nowhere, errors and log lines to the file at `path`.
    pub fn log_to(mut self, path: impl AsRef<std::path::Path>) -> Cmd {
        let log = std::fs::File::create(path).expect("create the child's log");
        self.cmd.stdout(Stdio::null()).stderr(log);
        self
    }

    /// Output kept for the caller (`Child::wait_with_output`).
    pub fn piped(mut self) -> Cmd {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self
    }

    /// Runs as an account (its AWS credentials and endpoint).
    pub fn envs(mut self, env: &[(String, String)]) -> Cmd {
        self.cmd
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self
    }

    /// An extra environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.cmd.env(key, value);
        self
    }

    /// Runs to the end (killed, and the test failed, after [`RUN_DEADLINE`]: a run that
    /// never ends is a defect, never a test that waits forever).
    pub fn run(self) -> Run {
        self.run_within(RUN_DEADLINE)
    }

    /// Runs to the end, within `limit`.
    pub fn run_within(mut self, limit: std::time::Duration) -> Run {
        off_runtime(|| output_within(&mut self.cmd, limit))
    }

    /// Starts it and returns the child.
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd.spawn().expect("start efs2atlas")
    }
}
