//! Test harness: the running test world (moto + Mongo), one moto account per test, and the
//! real binary run as a subprocess.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The binary under test with a clean environment (no user AWS config leaks in).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_efs2atlas"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
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
        c.output().expect("run efs2atlas").into()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private nx-27017 Mongo server on a free loopback port, stopped on drop.
pub struct Nx {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nx {
    /// Starts one with in-memory storage and waits until it accepts connections.
    pub fn start() -> Nx {
        let exe = need("EFS2ATLAS_TEST_NX");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let data: PathBuf = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let child = Command::new(exe)
            .args(["-p", &port.to_string(), "--host", "127.0.0.1", "--data-dir"])
            .arg(&data)
            .arg("--pid-file")
            .arg(dir.path().join("nx.pid"))
            .arg("--log-file")
            .arg(dir.path().join("nx.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nx-27017");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nx-27017 did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nx {
            port,
            child,
            _dir: dir,
        }
    }

    /// Its URI.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
