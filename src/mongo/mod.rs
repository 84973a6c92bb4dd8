//! MongoDB access: connecting with short timeouts, and the raw metadata commands that copy,
//! verify and discovery share.

pub mod access;
pub mod batches;
pub mod compare;
pub mod copy;
pub mod freeze;
pub mod indexes;
pub mod jobs;
pub mod ledger;
pub mod ledger_sync;
pub mod meta;
pub mod ns;
pub mod observe;
pub mod order;
pub mod parts;
pub mod patch;
pub mod pipe;
pub mod probe;
pub mod progress;
pub mod raw;
pub mod stream;
pub mod sync;
pub mod tier;
pub mod traffic;
pub mod verify;
pub mod wire;

use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::error::{Error, Result};
use crate::secret::scrub;
use crate::uri::MongoUri;

/// Databases that are never copied or listed.
pub const SYSTEM_DATABASES: &[&str] = &["admin", "local", "config"];

/// A connected client plus the URI it came from (for messages).
#[derive(Clone, Debug)]
pub struct Mongo {
    /// The driver client.
    pub client: Client,
    /// The URI, for redacted messages and scrubbing.
    pub uri: MongoUri,
    /// `source` or `target`, for messages.
    pub role: &'static str,
}

impl Mongo {
    /// Connects and pings; errors suggest a tunnel or `--source-uri` when the server is unreachable.
    pub async fn connect(uri: &MongoUri, role: &'static str, timeout: Duration) -> Result<Mongo> {
        let mut opts = ClientOptions::parse(uri.expose()).await.map_err(|e| {
            Error::usage(format!(
                "the {role} URI {} was rejected by the MongoDB driver: {}",
                uri.redacted(),
                scrub_err(uri, &e)
            ))
        })?;
        opts.app_name = Some("efs2atlas".into());
        wire::apply(&mut opts, uri);
        opts.server_selection_timeout = Some(timeout);
        opts.connect_timeout = Some(timeout);
        let client = Client::with_options(opts).map_err(|e| {
            Error::usage(format!(
                "the {role} URI {} is not usable: {}",
                uri.redacted(),
                scrub_err(uri, &e)
            ))
        })?;
        let m = Mongo {
            client,
            uri: uri.clone(),
            role,
        };
        m.client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .map_err(|e| {
                Error::mongo(
                    format!("{role} {}", uri.redacted()),
                    diagnose(role, uri, &e).unwrap_or_else(|| {
                        format!("{}; check the address and credentials", describe(uri, &e))
                    }),
                )
            })?;
        Ok(m)
    }

    /// Wraps a driver error with what we were doing, scrubbing the password.
    pub fn err(&self, context: impl Into<String>, e: mongodb::error::Error) -> Error {
        let context = format!(
            "{} ({}): {}",
            self.role,
            self.uri.redacted(),
            context.into()
        );
        let message = diagnose(self.role, &self.uri, &e).unwrap_or_else(|| describe(&self.uri, &e));
        if is_transient(&e) {
            Error::mongo_transient(context, message)
        } else {
            Error::mongo(context, message)
        }
    }

    /// The server version from `buildInfo`, if it answers.
    pub async fn version(&self) -> Option<String> {
        let r = self
            .client
            .database("admin")
            .run_command(doc! {"buildInfo": 1})
            .await
            .ok()?;
        r.get_str("version").ok().map(str::to_string)
    }

    /// User databases (admin/local/config left out) with their reported size on disk.
    pub async fn list_databases(&self) -> Result<Vec<(String, Option<i64>)>> {
        let r = self
            .client
            .database("admin")
            .run_command(doc! {"listDatabases": 1, "nameOnly": false})
            .await
            .map_err(|e| self.err("listDatabases", e))?;
        let mut out = Vec::new();
        for d in r
            .get_array("databases")
            .map(|a| a.as_slice())
            .unwrap_or(&[])
        {
            let Some(d) = d.as_document() else { continue };
            let Ok(name) = d.get_str("name") else {
                continue;
            };
            if SYSTEM_DATABASES.contains(&name) {
                continue;
            }
            let size = d.get("sizeOnDisk").and_then(as_i64);
            out.push((name.to_string(), size));
        }
        out.sort();
        Ok(out)
    }

    /// The raw `listCollections` entries of a database (options kept as the server sent them).
    pub async fn list_collections(&self, db: &str) -> Result<Vec<Document>> {
        let _w = crate::watch::waiting_on(format!("{}: listCollections on {db}", self.role));
        let d = self.client.database(db);
        cursor_command(&d, doc! {"listCollections": 1})
            .await
            .map_err(|e| self.err(format!("listCollections on {db}"), e))
    }

    /// The raw `listIndexes` entries of a collection.
    pub async fn list_indexes(&self, db: &str, coll: &str) -> Result<Vec<Document>> {
        let _w = crate::watch::waiting_on(format!("{}: listIndexes on {db}.{coll}", self.role));
        let d = self.client.database(db);
        cursor_command(&d, doc! {"listIndexes": coll})
            .await
            .map_err(|e| self.err(format!("listIndexes on {db}.{coll}"), e))
    }
}

/// Runs a command that answers with a cursor and follows it to the end.
async fn cursor_command(db: &Database, cmd: Document) -> mongodb::error::Result<Vec<Document>> {
    let r = db.run_command(cmd).await?;
    let cursor = r.get_document("cursor").cloned().unwrap_or_default();
    let mut out: Vec<Document> = batch(&cursor, "firstBatch");
    let mut id = cursor.get("id").and_then(as_i64).unwrap_or(0);
    let ns = cursor.get_str("ns").unwrap_or_default().to_string();
    let coll = ns
        .split_once('.')
        .map(|(_, c)| c.to_string())
        .unwrap_or_default();
    while id != 0 && !coll.is_empty() {
        let more = db
            .run_command(doc! {"getMore": id, "collection": &coll})
            .await?;
        let c = more.get_document("cursor").cloned().unwrap_or_default();
        out.extend(batch(&c, "nextBatch"));
        id = c.get("id").and_then(as_i64).unwrap_or(0);
    }
    Ok(out)
}

fn batch(cursor: &Document, key: &str) -> Vec<Document> {
    cursor
        .get_array(key)
        .map(|a| a.iter().filter_map(|d| d.as_document().cloned()).collect())
        .unwrap_or_default()
}

/// How many times a collection's copy or comparison is retried after transient errors
/// without progress before the run stops (the journal keeps what was done).
pub const RETRY_ATTEMPTS: u32 = 5;

/// The first pause between retries; it doubles each time, up to [`RETRY_MAX_PAUSE`].
pub const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause between retries.
pub const RETRY_MAX_PAUSE: Duration = Duration::from_secs(4);

/// Runs `op` again after transient failures, with exponential backoff, up to [`RETRY_ATTEMPTS`]
/// times in a row; other failures and cancellation return at once.
pub async fn with_retries<T, F, Fut>(what: &str, cancel: &crate::cancel::Cancel, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    with_retries_progress(what, cancel, || 0, op).await
}

/// Like [`with_retries`], but an attempt that moved `progress` forward resets the budget, so
/// a long copy over a flaky link keeps going as long as each attempt gets somewhere.
pub async fn with_retries_progress<T, F, Fut>(
    what: &str,
    cancel: &crate::cancel::Cancel,
    progress: impl Fn() -> u64,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    // The collection being worked on, for a watchdog line when no server call is named.
    let _doing = crate::watch::doing(what);
    let mut pause = RETRY_FIRST_PAUSE;
    let mut attempt = 0;
    let mut seen = progress();
    loop {
        let result = op().await;
        let now = progress();
        if now != seen {
            seen = now;
            attempt = 0;
            pause = RETRY_FIRST_PAUSE;
        }
        match result {
            Err(e) if e.is_transient() && attempt < RETRY_ATTEMPTS && !cancel.is_cancelled() => {
                attempt += 1;
                tracing::warn!("{what}: {e}; retrying in {pause:?} ({attempt}/{RETRY_ATTEMPTS})");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = cancel.cancelled() => return Err(Error::interrupted(format!("interrupted while waiting to retry {what}"))),
                }
                pause = (pause * 2).min(RETRY_MAX_PAUSE);
            }
            Err(e) if e.is_transient() => {
                return Err(Error::other(format!(
                    "{what}: gave up after {RETRY_ATTEMPTS} retries: {e}. Progress is in the journal; run the same command (or `efs2atlas resume`) once the server is reachable"
                )));
            }
            other => return other,
        }
    }
}

/// Server error codes that mean "try again": interrupted, not primary, shutting down, ...
/// and a cursor the server no longer has (43 CursorNotFound, 175 QueryPlanKilled, 237
/// CursorKilled: a restarted or failed-over server forgets its cursors). Every scan that
/// retries continues after the last document it acknowledged or compared, so reopening one is
/// safe.
const TRANSIENT_CODES: &[i32] = &[
    6, 7, 43, 89, 91, 175, 189, 237, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// True for a server error code that means "try again" (a step-down, a shutdown, ...).
pub fn is_transient_code(code: i32) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// True when a driver error is likely to pass: a dropped or refused connection, a pool reset,
/// no server selectable yet, or a server saying it is stepping down or shutting down.
pub fn is_transient(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    if e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError") {
        return true;
    }
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(c) => TRANSIENT_CODES.contains(&c.code),
        // A write the server interrupted (a step-down under w:majority): the data steps
        // write idempotently, so writing again is safe.
        ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(w)) => {
            TRANSIENT_CODES.contains(&w.code)
        }
        _ => false,
    }
}

/// Any BSON number as i64.
pub fn as_i64(b: &mongodb::bson::Bson) -> Option<i64> {
    match b {
        mongodb::bson::Bson::Int32(i) => Some(*i as i64),
        mongodb::bson::Bson::Int64(i) => Some(*i),
        mongodb::bson::Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}

/// A driver error's text with the URI's password removed.
pub fn scrub_err(uri: &MongoUri, e: &impl std::fmt::Display) -> String {
    scrub_text(uri, &e.to_string())
}

/// One sentence for the failures an operator fixes in the URI or the user's roles (login,
/// TLS, address, privileges), saying which side and what to do; `None` for anything else.
pub fn diagnose(role: &str, uri: &MongoUri, e: &mongodb::error::Error) -> Option<String> {
    let lower = e.to_string().to_lowercase();
    let sentence = version_problem(role, &lower)
        .or_else(|| atlas_problem(e))
        .or_else(|| login_problem(role, uri, e, &lower))
        .or_else(|| reach_problem(role, uri, e, &lower))?;
    Some(scrub_text(uri, &sentence))
}

/// A server too old (or too new) for the MongoDB driver, in the driver's own words ("reports
/// wire version N, but ... requires at least 8"): the version named, and what to do.
fn version_problem(role: &str, lower: &str) -> Option<String> {
    let number_after = |marker: &str| -> Option<i32> {
        let rest = lower.split(marker).nth(1)?;
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    if lower.contains("but this version of the mongodb rust driver requires at least") {
        let wire = number_after("reports wire version")?;
        // Wire versions name server releases (the MongoDB wire protocol's table).
        let version = match wire {
            7 => "4.0",
            6 => "3.6",
            5 => "3.4",
            4 => "3.2",
            3 => "3.0",
            _ => "older than 3.0",
        };
        let fix = if role == "source" {
            "upgrade the mongo container's image to mongo:4.2 or newer first (an in-place upgrade of one major version at a time, on the same EFS data), or move the data with mongodump --archive | mongorestore"
        } else {
            "use a target running MongoDB 4.2 or newer (Atlas runs 7.0 and 8.0)"
        };
        return Some(format!(
            "the {role} server runs MongoDB {version} (wire version {wire}); efs2atlas needs MongoDB 4.2 or newer on both sides: {fix}"
        ));
    }
    if lower.contains("but this version of the mongodb rust driver only supports up to") {
        let wire = number_after("requires wire version")?;
        return Some(format!(
            "the {role} server is newer than this efs2atlas can talk to (it requires wire version {wire}); install the latest efs2atlas"
        ));
    }
    None
}

/// What Atlas's shared-tier proxy refused (`AtlasError`, code 8000): the quota, or a command.
fn atlas_problem(e: &mongodb::error::Error) -> Option<String> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => tier::problem(Some(c.code), &c.message),
        _ => tier::problem(None, &e.to_string()),
    }
}

/// Wrong credentials, an untrusted or rejected certificate, a missing privilege.
fn login_problem(
    role: &str,
    uri: &MongoUri,
    e: &mongodb::error::Error,
    lower: &str,
) -> Option<String> {
    use mongodb::error::ErrorKind;
    let flag = format!("--{role}-uri");
    let user = uri.user.as_deref().unwrap_or("(none)");
    let code = match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    };
    if matches!(e.kind.as_ref(), ErrorKind::Authentication { .. })
        || code == Some(18)
        || lower.contains("authentication failed")
    {
        return Some(format!(
            "the {role} server rejected the login of user {user}: wrong user name or password, or the user is defined in another database than the URI's authSource; fix the credentials in {flag}"
        ));
    }
    if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        return Some(format!(
            "the {role} server's TLS certificate is not signed by a CA this machine trusts (UnknownIssuer); for a private CA add tlsCAFile=/path/to/ca.pem to {flag}"
        ));
    }
    if lower.contains("invalid peer certificate") {
        let why = lower
            .split("invalid peer certificate:")
            .nth(1)
            .map(|r| {
                r.split(['"', ',', '}'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        return Some(format!(
            "the {role} server's TLS certificate was rejected ({why}); check the host name in {flag} and the server's certificate"
        ));
    }
    if code == Some(13) || lower.contains("not authorized") {
        let what = match e.kind.as_ref() {
            ErrorKind::Command(c) => c.message.clone(),
            _ => describe(uri, e),
        };
        return Some(format!(
            "the {role} user {user} lacks a privilege ({}); give it the roles efs2atlas needs (see docs/guide.md: source root, or hostManager + clusterMonitor + readAnyDatabase; target readWriteAnyDatabase + dbAdminAnyDatabase + clusterMonitor)",
            scrub_text(uri, &what)
        ));
    }
    None
}

/// Nothing listening, TLS required but not asked for, a name that does not resolve, no answer.
fn reach_problem(
    role: &str,
    uri: &MongoUri,
    e: &mongodb::error::Error,
    lower: &str,
) -> Option<String> {
    let flag = format!("--{role}-uri");
    let hosts = &uri.hosts;
    let tunnel = if role == "source" {
        "; a mongo container inside a VPC is reached through a tunnel (e.g. `aws ssm start-session ... AWS-StartPortForwardingSessionToRemoteHost`) and --source-uri mongodb://127.0.0.1:PORT"
    } else {
        ""
    };
    let closed = [
        "connection reset",
        "unexpected end of file",
        "early eof",
        "broken pipe",
        "connection closed",
    ];
    let unresolved = [
        "failed to lookup address",
        "name or service not known",
        "no record found",
        "dns",
    ];
    if lower.contains("connection refused") {
        Some(format!(
            "nothing accepts connections at {hosts} (connection refused); check the host and port in {flag}{tunnel}"
        ))
    } else if !uri.tls_requested() && closed.iter().any(|w| lower.contains(w)) {
        Some(format!(
            "the {role} server at {hosts} closed the connection at once: it probably requires TLS (Atlas always does); add tls=true to {flag} (and tlsCAFile= for a private CA)"
        ))
    } else if unresolved.iter().any(|w| lower.contains(w)) {
        Some(format!(
            "the {role} host in {flag} ({hosts}) does not resolve; check its spelling{tunnel}"
        ))
    } else if matches!(
        e.kind.as_ref(),
        mongodb::error::ErrorKind::ServerSelection { .. }
    ) && (lower.contains("timed out") || lower.contains("timeout"))
    {
        Some(format!(
            "no {role} server answered at {hosts} in time; check the address in {flag} and that the network lets this machine reach it{tunnel}"
        ))
    } else {
        None
    }
}

/// A driver error as one readable sentence (the driver's Display lists internal fields).
pub fn describe(uri: &MongoUri, e: &mongodb::error::Error) -> String {
    use mongodb::error::ErrorKind;
    let text = match e.kind.as_ref() {
        ErrorKind::Io(io) => format!("connection error: {io}"),
        ErrorKind::ServerSelection { message, .. } => format!(
            "no server reachable: {}",
            message.split(" Topology:").next().unwrap_or(message)
        ),
        ErrorKind::ConnectionPoolCleared { message, .. } => {
            format!("connection pool reset: {message}")
        }
        ErrorKind::Command(c) => format!("{} (code {}): {}", c.code_name, c.code, c.message),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(w)) => format!(
            "write concern not met: {} (code {}): {}",
            w.code_name, w.code, w.message
        ),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => format!(
            "write failed: {} (code {}): {}",
            w.code_name.as_deref().unwrap_or("error"),
            w.code,
            w.message
        ),
        ErrorKind::InsertMany(m) => match (m.write_errors.as_deref(), &m.write_concern_error) {
            (Some([w, ..]), _) => format!("insert failed: code {}: {}", w.code, w.message),
            (_, Some(w)) => format!(
                "write concern not met: {} (code {}): {}",
                w.code_name, w.code, w.message
            ),
            _ => "insert failed".to_string(),
        },
        ErrorKind::Authentication { message, .. } => format!("authentication failed: {message}"),
        _ => e.to_string(),
    };
    scrub_text(uri, &text)
}

fn scrub_text(uri: &MongoUri, text: &str) -> String {
    let text = text.to_string();
    let mut secrets = vec![uri.secret()];
    if let Some(p) = &uri.password {
        secrets.push(p);
    }
    scrub(&text, &secrets)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_too_old_for_the_driver_is_named_with_its_version_and_the_way_out() {
        let driver = "Server selection timeout: No available servers. Topology: { Type: Unknown, Servers: [ { Address: 127.0.0.1:27017, Type: Unknown, Error: Server at 127.0.0.1:27017 reports wire version 7, but this version of the MongoDB Rust driver requires at least 8 (MongoDB 4.2). } ] }";
        let s = super::version_problem("source", &driver.to_lowercase()).unwrap();
        assert!(s.contains("runs MongoDB 4.0 (wire version 7)"), "{s}");
        assert!(s.contains("mongo:4.2 or newer"), "{s}");
        let newer = "Server at h:1 requires wire version 30, but this version of the MongoDB Rust driver only supports up to 25";
        let s = super::version_problem("target", &newer.to_lowercase()).unwrap();
        assert!(s.contains("latest efs2atlas"), "{s}");
        assert!(super::version_problem("source", "connection refused").is_none());
    }
}
