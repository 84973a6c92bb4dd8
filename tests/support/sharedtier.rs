//! A stand-in for Atlas's shared tiers (M0 and Flex), in the tests only: a MongoDB wire proxy
//! on loopback in front of the real target mongod, as Atlas puts a proxy in front of a shared
//! cluster. It speaks TLS on both sides (the test certificate towards the client, the test CA
//! towards the target), reads every OP_MSG the client sends, and answers in Atlas's shape
//! (`{ok: 0, code: 8000, codeName: "AtlasError", errmsg: "(AtlasError) ..."}`, TESTING.md):
//! - the commands those tiers refuse (`REFUSED`, and `aggregate` over `$currentOp`);
//! - reads and writes of data on `admin`;
//! - writes once the space quota is used up (`you are over your space quota, using X MB of
//!   Y MB`): the bytes of every document inserted are counted, as Atlas counts data size;
//! - it throttles to `ops_per_sec` operations a second (slower, never refused).
//!
//! A client's OP_MSG `hello` is passed on without its `compression` list, so the target does
//! not pick a compressor; a compressed message (OP_COMPRESSED, which the legacy OP_QUERY
//! handshake can still lead to) passes unread and is recorded as `OP_COMPRESSED`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mongod::ca_file;
use crate::tcpfault::listen;

/// What M0 and Flex refuse (Atlas docs, "Unsupported commands"; TESTING.md).
pub const REFUSED: &[&str] = &[
    "applyOps",
    "fsync",
    "fsyncUnlock",
    "dbHash",
    "dataSize",
    "validate",
    "createUser",
    "updateUser",
    "usersInfo",
    "createRole",
    "compact",
    "reIndex",
    "cloneCollectionAsCapped",
    "setParameter",
    "replSetGetStatus",
    "replSetGetConfig",
    "hostInfo",
];

/// Commands that read or write data, refused on `admin`.
const DATA: &[&str] = &[
    "insert",
    "update",
    "delete",
    "find",
    "findAndModify",
    "create",
    "drop",
    "createIndexes",
    "dropIndexes",
    "aggregate",
    "count",
];

const OP_MSG: i32 = 2013;
const OP_COMPRESSED: i32 = 2012;
const MIB: u64 = 1024 * 1024;

/// What the proxy saw and did.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every command name the client sent, in order.
    pub commands: Vec<String>,
    /// The refusals it answered, as `command: errmsg`.
    pub refused: Vec<String>,
    /// Bytes of documents inserted so far (the quota's use).
    pub used: u64,
}

/// The running stand-in; stops when dropped.
pub struct SharedTier {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Seen>>,
    limits: Arc<Limits>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Limits {
    quota: std::sync::atomic::AtomicU64,
    gap: Duration,
    next: Mutex<Instant>,
}

impl SharedTier {
    /// An M0-like proxy to the target on `upstream` with a quota of `quota_mib` MiB and at
    /// most `ops_per_sec` operations a second.
    pub fn start(upstream: u16, quota_mib: u64, ops_per_sec: u32) -> SharedTier {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let limits = Arc::new(Limits {
            quota: std::sync::atomic::AtomicU64::new(quota_mib * MIB),
            gap: Duration::from_secs(1) / ops_per_sec.max(1),
            next: Mutex::new(Instant::now()),
        });
        let (acceptor, connector) = tls();
        let (s, l) = (seen.clone(), limits.clone());
        let (port, stop) = listen(move |client| {
            let (s, l, a, c) = (s.clone(), l.clone(), acceptor.clone(), connector.clone());
            async move {
                let _ = serve(client, upstream, s, l, a, c).await;
            }
        });
        SharedTier {
            port,
            seen,
            limits,
            _stop: stop,
        }
    }

    /// The cluster moves to a tier with `quota_mib` MiB of storage (same address).
    pub fn set_quota(&self, quota_mib: u64) {
        self.limits
            .quota
            .store(quota_mib * MIB, std::sync::atomic::Ordering::Relaxed);
    }

    /// What it saw so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }
}

fn tls() -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem = std::env::var("EFS2ATLAS_TEST_TLS_SERVER_PEM")
        .expect("EFS2ATLAS_TEST_TLS_SERVER_PEM (scripts/test-env env)");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pem)
        .expect("server certificate")
        .map(|c| c.expect("server certificate"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pem).expect("server key");
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server TLS config");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file()).expect("test CA") {
        roots.add(c.expect("test CA")).expect("test CA");
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    )
}

async fn serve(
    client: TcpStream,
    upstream: u16,
    seen: Arc<Mutex<Seen>>,
    limits: Arc<Limits>,
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
) -> std::io::Result<()> {
    let client = acceptor.accept(client).await?;
    let server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let server = connector.connect(name, server).await?;
    let (mut cr, cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let cw = Arc::new(tokio::sync::Mutex::new(cw));
    // Replies flow back as they come (a cursor's replies, say); refusals are written by the
    // reading side under the same lock, so messages never interleave.
    let down = {
        let cw = cw.clone();
        tokio::spawn(async move {
            while let Ok(m) = read_message(&mut sr).await {
                if send(&mut *cw.lock().await, &m).await.is_err() {
                    return;
                }
            }
        })
    };
    let r = async {
        loop {
            let mut m = read_message(&mut cr).await?;
            throttle(&limits).await;
            if let Some(reply) = judge(&mut m, &seen, &limits) {
                send(&mut *cw.lock().await, &reply).await?;
                continue;
            }
            send(&mut sw, &m).await?;
        }
    }
    .await;
    down.abort();
    r
}

/// Writes a whole message and flushes it: a TLS stream keeps what it has encrypted in its
/// own buffer until flushed, so the last reply of a burst would otherwise never leave.
async fn send<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, m: &[u8]) -> std::io::Result<()> {
    w.write_all(m).await?;
    w.flush().await
}

async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await?;
    let len = i32::from_le_bytes(head) as usize;
    if !(16..=64 * 1024 * 1024).contains(&len) {
        return Err(std::io::Error::other("bad message length"));
    }
    let mut m = vec![0u8; len];
    m[..4].copy_from_slice(&head);
    r.read_exact(&mut m[4..]).await?;
    Ok(m)
}

async fn throttle(l: &Limits) {
    let wait = {
        let mut next = l.next.lock().unwrap();
        let now = Instant::now();
        let at = (*next).max(now);
        *next = at + l.gap;
        at - now
    };
    tokio::time::sleep(wait).await;
}

/// The command in an OP_MSG: its body and the documents of its sequences (kind 1).
struct Msg {
    body: Document,
    body_at: (usize, usize),
    sequence_bytes: u64,
}

fn parse(m: &[u8]) -> Option<Msg> {
    if i32::from_le_bytes(m[12..16].try_into().ok()?) != OP_MSG {
        return None;
    }
    let flags = u32::from_le_bytes(m[16..20].try_into().ok()?);
    // A checksum (bit 0) closes the message; the sections end before it.
    let end = if flags & 1 == 1 { m.len() - 4 } else { m.len() };
    let mut at = 20;
    let mut body = None;
    let mut sequence_bytes = 0u64;
    while at < end {
        let kind = m[at];
        at += 1;
        let size = i32::from_le_bytes(m[at..at + 4].try_into().ok()?) as usize;
        if kind == 0 {
            let doc = Document::from_reader(&m[at..at + size]).ok()?;
            body = Some((doc, (at, at + size)));
        } else {
            // size, identifier (a C string), then the documents.
            let ident_end = m[at + 4..at + size].iter().position(|b| *b == 0)? + at + 5;
            sequence_bytes += (at + size - ident_end) as u64;
        }
        at += size;
    }
    let (body, body_at) = body?;
    Some(Msg {
        body,
        body_at,
        sequence_bytes,
    })
}

/// Atlas's answer to a message it refuses, or `None` to pass it on (possibly changed).
fn judge(m: &mut Vec<u8>, seen: &Mutex<Seen>, l: &Limits) -> Option<Vec<u8>> {
    if i32::from_le_bytes(m[12..16].try_into().ok()?) == OP_COMPRESSED {
        seen.lock().unwrap().commands.push("OP_COMPRESSED".into());
        return None;
    }
    let msg = parse(m)?;
    let command = msg.body.keys().next()?.to_string();
    let db = msg.body.get_str("$db").unwrap_or("").to_string();
    let mut seen = seen.lock().unwrap();
    seen.commands.push(command.clone());
    let current_op = command == "aggregate"
        && msg
            .body
            .get_array("pipeline")
            .ok()
            .and_then(|p| p.first())
            .and_then(|s| s.as_document())
            .is_some_and(|s| s.contains_key("$currentOp"));
    let refusal = if REFUSED.contains(&command.as_str()) || current_op {
        Some(format!(
            "(AtlasError) {command} is not allowed in this atlas tier"
        ))
    } else if db == "admin" && DATA.contains(&command.as_str()) {
        Some(format!(
            "(AtlasError) {command} is not allowed on the admin database in this atlas tier"
        ))
    } else if command == "insert" {
        let inline: u64 = msg
            .body
            .get_array("documents")
            .map(|docs| {
                docs.iter()
                    .filter_map(|d| d.as_document())
                    .filter_map(|d| mongodb::bson::to_vec(d).ok())
                    .map(|b| b.len() as u64)
                    .sum()
            })
            .unwrap_or(0);
        let incoming = msg.sequence_bytes + inline;
        let quota = l.quota.load(std::sync::atomic::Ordering::Relaxed);
        if seen.used >= quota {
            Some(format!(
                "(AtlasError) you are over your space quota, using {} MB of {} MB",
                seen.used / MIB,
                quota / MIB
            ))
        } else {
            seen.used += incoming;
            None
        }
    } else {
        None
    };
    let request_id = i32::from_le_bytes(m[4..8].try_into().ok()?);
    if let Some(errmsg) = refusal {
        seen.refused.push(format!("{command}: {errmsg}"));
        return Some(reply(
            request_id,
            doc! {"ok": 0.0, "errmsg": errmsg, "code": 8000, "codeName": "AtlasError"},
        ));
    }
    if matches!(command.as_str(), "hello" | "isMaster" | "ismaster")
        && msg.body.contains_key("compression")
    {
        let mut body = msg.body.clone();
        body.remove("compression");
        let mut bytes = Vec::new();
        body.to_writer(&mut bytes).ok()?;
        let (a, b) = msg.body_at;
        m.splice(a..b, bytes);
        let len = m.len() as i32;
        m[..4].copy_from_slice(&len.to_le_bytes());
    }
    None
}

fn reply(response_to: i32, body: Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    body.to_writer(&mut bytes).expect("a reply document");
    let mut m = Vec::with_capacity(21 + bytes.len());
    m.extend_from_slice(&((21 + bytes.len()) as i32).to_le_bytes());
    m.extend_from_slice(&0i32.to_le_bytes());
    m.extend_from_slice(&response_to.to_le_bytes());
    m.extend_from_slice(&OP_MSG.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.push(0);
    m.extend_from_slice(&bytes);
    m
}
