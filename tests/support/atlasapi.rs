//! A stand-in for the Atlas Administration API v2, in the tests only, on loopback: stateful
//! (a project with clusters, an IP access list and database users), signed in to as Atlas
//! is (a service account's OAuth 2.0 client credentials at `/api/oauth/token`, tokens for
//! 3600 s; or a legacy API key by HTTP digest), versioned by the `Accept` header (a missing
//! or unknown version: 406), and failing in Atlas's error shape
//! (`{"detail", "error", "errorCode", "parameters", "reason"}`): 401, 403 for a credential
//! without the role, 404, 409 for duplicates, 429 with `Retry-After` when told to throttle.
//! Facts from TESTING.md ("Atlas as users have it") and Atlas's published OpenAPI.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::{header, read_request};

/// The project the stand-in serves.
pub const PROJECT: &str = "65a1b2c3d4e5f6a7b8c9d0e1";
/// Its service account.
pub const CLIENT_ID: &str = "mdb_sa_id_65a1b2c3d4e5f6a7b8c9d0e2";
/// The service account's secret.
pub const CLIENT_SECRET: &str = "mdb_sa_sk_Tq8wZ3nV5kR2pL9xJ4mB7cY1";
/// A legacy API key.
pub const PUBLIC_KEY: &str = "abcdefgh";
/// Its private part.
pub const PRIVATE_KEY: &str = "5d1f0c3e-7a2b-4c8d-9e6f-1a2b3c4d5e6f";

/// The stand-in's state; tests read and change it through [`AtlasApi::state`].
#[derive(Default)]
pub struct State {
    /// Dedicated and free clusters by name (Atlas's 2024-08-05 shape).
    pub clusters: HashMap<String, Value>,
    /// Flex clusters by name (2024-11-13 shape).
    pub flex: HashMap<String, Value>,
    /// The access list (`cidrBlock`, `comment`, `deleteAfterDate`).
    pub access: Vec<Value>,
    /// Database users as posted (passwords kept: a hook may create the real user).
    pub users: Vec<Value>,
    /// False: the credential lacks the write roles (every change is a 403).
    pub may_write: bool,
    /// Answer this many more requests with 429.
    pub throttle: usize,
    /// Every request as `METHOD PATH`.
    pub log: Vec<String>,
    /// Tokens handed out.
    pub tokens: Vec<String>,
    nonce: u64,
    /// User changes not yet applied to the cluster (by [`AtlasApi::on_users`]).
    changes: Vec<UserChange>,
}

/// A database user made, changed or deleted through the API: what Atlas then applies to the
/// cluster itself.
#[derive(Clone, Debug)]
pub enum UserChange {
    /// Made or changed: name, password, `(role, db)` pairs.
    Put(String, String, Vec<(String, String)>),
    /// Deleted.
    Delete(String),
}

/// What applies user changes to the real cluster (the test's target mongod).
pub type Apply = Arc<
    dyn Fn(UserChange) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// The address `GET /checkip` reports as the caller's (TEST-NET-2).
pub const CALLER_IP: &str = "198.51.100.23";

/// The running stand-in; stops when dropped.
pub struct AtlasApi {
    /// Its base URL (`EFS2ATLAS_ATLAS_API_URL`).
    pub url: String,
    state: Arc<Mutex<State>>,
    apply: Arc<Mutex<Option<Apply>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AtlasApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An M0 cluster `name` whose standard SRV string is `srv`, as Atlas describes it.
pub fn m0(name: &str, srv: &str) -> Value {
    json!({
        "name": name, "groupId": PROJECT, "mongoDBVersion": "8.0.4", "stateName": "IDLE",
        "paused": false, "clusterType": "REPLICASET",
        "replicationSpecs": [{"zoneName": "Zone 1", "regionConfigs": [{
            "providerName": "TENANT", "backingProviderName": "AWS", "regionName": "EU_CENTRAL_1",
            "priority": 7, "electableSpecs": {"instanceSize": "M0"}}]}],
        "connectionStrings": {"standard": "mongodb://h0:27017,h1:27017,h2:27017/?ssl=true",
            "standardSrv": srv}
    })
}

/// A dedicated cluster of `tier` (`M10`, ...).
pub fn dedicated(name: &str, tier: &str, srv: &str) -> Value {
    let mut c = m0(name, srv);
    c["replicationSpecs"][0]["regionConfigs"][0] = json!({
        "providerName": "AWS", "regionName": "EU_CENTRAL_1", "priority": 7,
        "electableSpecs": {"instanceSize": tier, "nodeCount": 3}});
    c
}

impl AtlasApi {
    /// Starts the stand-in with an empty project whose credential may write.
    pub async fn start() -> AtlasApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            may_write: true,
            ..State::default()
        }));
        let apply: Arc<Mutex<Option<Apply>>> = Arc::default();
        let (s, a) = (state.clone(), apply.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, s, a).await;
                });
            }
        });
        AtlasApi {
            url,
            state,
            apply,
            task,
        }
    }

    /// Applies every user change to a real cluster before the API answers (Atlas does it
    /// in the background; here it is done by the time the caller connects).
    pub fn on_users(&self, apply: Apply) {
        *self.apply.lock().unwrap() = Some(apply);
    }

    /// Reads or changes the state.
    pub fn state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// The variables that point efs2atlas here with the service account.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("EFS2ATLAS_ATLAS_API_URL", self.url.clone()),
            ("EFS2ATLAS_ATLAS_CLIENT_ID", CLIENT_ID.into()),
            ("EFS2ATLAS_ATLAS_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("EFS2ATLAS_CHECKIP_URL", format!("{}/checkip", self.url)),
        ]
    }

    /// The variables that point efs2atlas here with the legacy API key (digest).
    pub fn key_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("EFS2ATLAS_ATLAS_API_URL", self.url.clone()),
            ("EFS2ATLAS_ATLAS_PUBLIC_KEY", PUBLIC_KEY.into()),
            ("EFS2ATLAS_ATLAS_PRIVATE_KEY", PRIVATE_KEY.into()),
        ]
    }
}

/// An answer: status, extra headers, JSON body.
type Answer = (u16, Vec<(&'static str, String)>, Value);

fn error(status: u16, code: &str, detail: &str) -> Answer {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        406 => "Not Acceptable",
        409 => "Conflict",
        429 => "Too Many Requests",
        _ => "Error",
    };
    (
        status,
        Vec::new(),
        json!({"detail": detail, "error": status, "errorCode": code, "parameters": [], "reason": reason}),
    )
}

async fn serve(
    mut conn: TcpStream,
    state: Arc<Mutex<State>>,
    apply: Arc<Mutex<Option<Apply>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some((head_len, request)) = read_request(&mut conn, &mut buf).await? {
        let head = String::from_utf8_lossy(&request[..head_len]).to_string();
        let body = String::from_utf8_lossy(&request[head_len..]).to_string();
        let (status, headers, value, changes) = {
            let mut st = state.lock().unwrap();
            let (s, h, v) = answer(&head, &body, &mut st);
            (s, h, v, std::mem::take(&mut st.changes))
        };
        let apply = apply.lock().unwrap().clone();
        if let Some(apply) = apply {
            for c in changes {
                apply(c).await;
            }
        }
        let text = match &value {
            Value::Null => String::new(),
            Value::String(plain) => plain.clone(),
            v => v.to_string(),
        };
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            text.len()
        );
        for (k, v) in headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&text);
        conn.write_all(resp.as_bytes()).await?;
    }
    Ok(())
}

fn answer(head: &str, body: &str, st: &mut State) -> Answer {
    let first = head.lines().next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    st.log.push(format!("{method} {target}"));
    let path = target.split('?').next().unwrap_or("");
    if path == "/api/oauth/token" {
        return token(head, st);
    }
    if path == "/checkip" {
        // checkip.amazonaws.com's answer: the address and a newline (plain text).
        return (200, Vec::new(), Value::String(format!("{CALLER_IP}\n")));
    }
    let Some(rest) = path.strip_prefix("/api/atlas/v2") else {
        return error(404, "RESOURCE_NOT_FOUND", "no such resource");
    };
    if let Some(denied) = authenticate(head, method, target, st) {
        return denied;
    }
    if st.throttle > 0 {
        st.throttle -= 1;
        let (s, _, b) = error(429, "RATE_LIMITED", "Too many requests; retry later.");
        return (s, vec![("Retry-After", "1".into())], b);
    }
    let segs: Vec<String> = rest
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let Some(["groups", group, tail @ ..]) = Some(segs.as_slice()) else {
        return error(404, "RESOURCE_NOT_FOUND", "no such resource");
    };
    if *group != PROJECT {
        return error(
            404,
            "GROUP_NOT_FOUND",
            &format!("No group with ID {group} exists."),
        );
    }
    let version = match tail.first().copied() {
        Some("clusters") => "2024-08-05",
        Some("flexClusters") => "2024-11-13",
        _ => "2023-01-01",
    };
    let accept = header(head, "accept").unwrap_or("");
    if accept != format!("application/vnd.atlas.{version}+json") {
        return error(
            406,
            "INVALID_VERSION_DATE",
            &format!("The version in the Accept header '{accept}' is not supported."),
        );
    }
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if method != "GET" && !st.may_write {
        return error(
            403,
            "USER_UNAUTHORIZED",
            "Current user is not authorized to perform this action.",
        );
    }
    route(method, tail, body, st)
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn route(method: &str, tail: &[&str], body: Value, st: &mut State) -> Answer {
    let ok = |v: Value| (200, Vec::new(), v);
    match (method, tail) {
        ("GET", ["clusters", name]) => match st.clusters.get(*name) {
            Some(c) => ok(c.clone()),
            None if st.flex.contains_key(*name) => error(
                400,
                "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API",
                &format!("Cannot use the Clusters API to read Flex cluster {name}."),
            ),
            None => error(
                404,
                "CLUSTER_NOT_FOUND",
                &format!("No cluster named {name} exists in group {PROJECT}."),
            ),
        },
        ("GET", ["flexClusters", name]) => match st.flex.get(*name) {
            Some(c) => ok(c.clone()),
            None => error(
                404,
                "CLUSTER_NOT_FOUND",
                &format!("No cluster named {name} exists in group {PROJECT}."),
            ),
        },
        ("GET", ["accessList"]) => ok(json!({"results": st.access, "totalCount": st.access.len()})),
        ("POST", ["accessList"]) => {
            for e in body.as_array().cloned().unwrap_or_default() {
                let cidr = e["cidrBlock"].as_str().unwrap_or_default().to_string();
                if st.access.iter().any(|a| a["cidrBlock"] == cidr.as_str()) {
                    return error(
                        409,
                        "DUPLICATE_ACCESS_LIST_ENTRY",
                        &format!("Access list entry {cidr} already exists."),
                    );
                }
                let mut e = e.clone();
                e["groupId"] = json!(PROJECT);
                st.access.push(e);
            }
            (201, Vec::new(), json!({"results": st.access}))
        }
        ("DELETE", ["accessList", entry]) => {
            let before = st.access.len();
            st.access.retain(|a| a["cidrBlock"] != *entry);
            if st.access.len() == before {
                return error(
                    404,
                    "ACCESS_LIST_ENTRY_NOT_FOUND",
                    &format!("Access list entry {entry} not found."),
                );
            }
            (204, Vec::new(), Value::Null)
        }
        ("GET", ["databaseUsers"]) => {
            let shown: Vec<Value> = st.users.iter().map(without_password).collect();
            ok(json!({"results": shown, "totalCount": shown.len()}))
        }
        ("POST", ["databaseUsers"]) => {
            let name = body["username"].as_str().unwrap_or_default().to_string();
            if st.users.iter().any(|u| u["username"] == name.as_str()) {
                return error(
                    409,
                    "USER_ALREADY_EXISTS",
                    &format!("The specified database user {name} already exists."),
                );
            }
            st.users.push(body.clone());
            st.changes.push(put(&body));
            (201, Vec::new(), without_password(&body))
        }
        ("PATCH", ["databaseUsers", "admin", name]) => {
            let Some(u) = st.users.iter_mut().find(|u| u["username"] == *name) else {
                return error(
                    404,
                    "USERNAME_NOT_FOUND",
                    &format!("No user with username {name} exists."),
                );
            };
            for (k, v) in body.as_object().cloned().unwrap_or_default() {
                u[k] = v;
            }
            let shown = without_password(u);
            let change = put(u);
            st.changes.push(change);
            ok(shown)
        }
        ("DELETE", ["databaseUsers", "admin", name]) => {
            let before = st.users.len();
            st.users.retain(|u| u["username"] != *name);
            if st.users.len() == before {
                return error(
                    404,
                    "USERNAME_NOT_FOUND",
                    &format!("No user with username {name} exists."),
                );
            }
            st.changes.push(UserChange::Delete(name.to_string()));
            (204, Vec::new(), Value::Null)
        }
        _ => error(404, "RESOURCE_NOT_FOUND", "no such resource"),
    }
}

fn put(u: &Value) -> UserChange {
    let roles = u["roles"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            (
                r["roleName"].as_str().unwrap_or_default().to_string(),
                r["databaseName"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    UserChange::Put(
        u["username"].as_str().unwrap_or_default().to_string(),
        u["password"].as_str().unwrap_or_default().to_string(),
        roles,
    )
}

fn without_password(u: &Value) -> Value {
    let mut u = u.clone();
    if let Some(o) = u.as_object_mut() {
        o.remove("password");
    }
    u
}

/// The client-credentials grant: HTTP basic with the service account's id and secret.
fn token(head: &str, st: &mut State) -> Answer {
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    if header(head, "authorization") != Some(&format!("Basic {want}")) {
        return (
            401,
            Vec::new(),
            json!({"error": "invalid_client", "error_description": "Invalid client credentials."}),
        );
    }
    let t = format!("eyJ0eXAiOiJKV1Qi.stand-in.{}", st.tokens.len());
    st.tokens.push(t.clone());
    (
        200,
        Vec::new(),
        json!({"access_token": t, "expires_in": 3600, "token_type": "Bearer"}),
    )
}

/// None when the request is signed by a token handed out or a right digest; else the 401
/// (with a fresh digest challenge).
fn authenticate(head: &str, method: &str, target: &str, st: &mut State) -> Option<Answer> {
    let auth = header(head, "authorization").unwrap_or("");
    if let Some(t) = auth.strip_prefix("Bearer ")
        && st.tokens.iter().any(|x| x == t)
    {
        return None;
    }
    if let Some(d) = auth.strip_prefix("Digest ") {
        let p = digest_params(d);
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let ha1 = md5_hex(&format!("{}:MMS Public API:{PRIVATE_KEY}", get("username")));
        let ha2 = md5_hex(&format!("{method}:{}", get("uri")));
        let want = md5_hex(&format!(
            "{ha1}:{}:{}:{}:{}:{ha2}",
            get("nonce"),
            get("nc"),
            get("cnonce"),
            get("qop")
        ));
        if get("username") == PUBLIC_KEY && get("uri") == target && get("response") == want {
            return None;
        }
    }
    st.nonce += 1;
    let (s, _, b) = error(
        401,
        "UNAUTHORIZED",
        "You are not authorized for this resource.",
    );
    let challenge = format!(
        "Digest realm=\"MMS Public API\", domain=\"\", nonce=\"n{:08x}stand-in\", algorithm=MD5, qop=\"auth\", stale=false",
        st.nonce
    );
    Some((s, vec![("WWW-Authenticate", challenge)], b))
}

fn digest_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for part in s.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            out.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    }
    out
}

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
