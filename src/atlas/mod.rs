//! The MongoDB Atlas Administration API (v2), the few calls efs2atlas needs: the cluster,
//! the project's IP access list and its database users. Every request names the resource
//! version it was written against (`Accept: application/vnd.atlas.YYYY-MM-DD+json`), honours
//! `429` with `Retry-After` (a bounded number of times), and every failure is one sentence:
//! which call, what Atlas said, what to do.

pub mod auth;
pub mod model;

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{Error, Kind, Result};
pub use auth::Credentials;

/// Atlas's public address; `EFS2ATLAS_ATLAS_API_URL` overrides it (Atlas for Government,
/// the tests), as `AWS_ENDPOINT_URL` does for AWS.
pub const DEFAULT_URL: &str = "https://cloud.mongodb.com";

/// The variable that overrides [`DEFAULT_URL`].
pub const URL_VAR: &str = "EFS2ATLAS_ATLAS_API_URL";

/// How often a throttled (`429`) call is tried again, and the longest pause asked for that
/// is honoured; beyond either the call fails with a sentence.
const RETRIES_429: u32 = 5;
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One call's bound (connect and answer): no request waits for ever.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The roles a service account or key needs on the project, named in a 403's fix.
pub const ROLES: &str = "Project Owner, or Project Database Access Admin + Project Network Access Manager (and Project Read Only for the cluster)";

/// A client of the Admin API for one project.
pub struct Atlas {
    base: String,
    /// The project (group) id.
    pub project: String,
    http: reqwest::Client,
    creds: Credentials,
    token: Mutex<Option<(String, Instant)>>,
}

/// One request: method, path under `/api/atlas/v2`, resource version, body.
pub struct Call<'a> {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path after `/api/atlas/v2`, e.g. `/groups/{id}/accessList`.
    pub path: String,
    /// The resource version, e.g. `2023-01-01`.
    pub version: &'static str,
    /// A JSON body, if any.
    pub body: Option<Value>,
    /// What the call is for, in messages: `reading cluster c0`.
    pub what: &'a str,
}

impl Atlas {
    /// A client for `project` at `base` (None: `EFS2ATLAS_ATLAS_API_URL` or Atlas itself).
    pub fn new(base: Option<String>, project: &str, creds: Credentials) -> Result<Atlas> {
        let base = base
            .or_else(|| std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::usage(format!(
                "{URL_VAR} '{base}' is not an http(s) URL; leave it unset for {DEFAULT_URL}"
            )));
        }
        let valid = project.len() == 24 && project.chars().all(|c| c.is_ascii_hexdigit());
        if !valid {
            return Err(Error::usage(format!(
                "--atlas-project '{project}' is not an Atlas project id (24 hex digits, shown in Atlas under Project Settings)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("efs2atlas/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::other(format!("cannot set up an HTTPS client: {e}")))?;
        Ok(Atlas {
            base,
            project: project.to_string(),
            http,
            creds,
            token: Mutex::new(None),
        })
    }

    /// The API's base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `call`; the parsed JSON answer (`Null` for an empty one), or the status and
    /// Atlas's error document as an [`ApiError`].
    pub async fn send(&self, call: &Call<'_>) -> Result<Value, ApiError> {
        let mut throttled = 0;
        loop {
            let resp = self.attempt(call).await?;
            let status = resp.status().as_u16();
            if status == 429 && throttled < RETRIES_429 {
                let after = retry_after(resp.headers()).min(LONGEST_RETRY_AFTER);
                throttled += 1;
                tracing::info!(
                    "Atlas API throttled {} (429): trying again in {}s",
                    call.what,
                    after.as_secs()
                );
                tokio::time::sleep(after).await;
                continue;
            }
            let text = resp.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                return Ok(body);
            }
            return Err(ApiError {
                status,
                body,
                local: None,
            });
        }
    }

    /// One attempt, signed (a digest key answers the challenge of a first, unsigned try).
    async fn attempt(&self, call: &Call<'_>) -> Result<reqwest::Response, ApiError> {
        let path = format!("/api/atlas/v2{}", call.path);
        let url = format!("{}{path}", self.base);
        let build = |auth: Option<String>| {
            let mut r = self
                .http
                .request(call.method.clone(), &url)
                .header(
                    "Accept",
                    format!("application/vnd.atlas.{}+json", call.version),
                )
                .header("Content-Type", "application/json");
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            if let Some(b) = &call.body {
                r = r.body(b.to_string());
            }
            r
        };
        let send = |r: reqwest::RequestBuilder| async move {
            r.send().await.map_err(|e| ApiError::transport(&e))
        };
        match &self.creds {
            Credentials::ServiceAccount { .. } => {
                let token = self.bearer().await?;
                send(build(Some(format!("Bearer {token}")))).await
            }
            Credentials::ApiKey { public, private } => {
                let first = send(build(None)).await?;
                if first.status().as_u16() != 401 {
                    return Ok(first);
                }
                let challenge = first
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::parse_challenge);
                let Some(c) = challenge else {
                    return Ok(first);
                };
                let cnonce: String = auth::random_bytes(8)
                    .map_err(ApiError::local)?
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let h =
                    auth::digest_header(&c, public, private, call.method.as_str(), &path, &cnonce);
                send(build(Some(h))).await
            }
        }
    }

    /// A service account's bearer token, fetched once and kept until a minute before it
    /// expires.
    async fn bearer(&self) -> Result<String, ApiError> {
        let mut held = self.token.lock().await;
        if let Some((t, until)) = held.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let Credentials::ServiceAccount { id, secret } = &self.creds else {
            return Err(ApiError::local(Error::other("no service account")));
        };
        let resp = self
            .http
            .post(format!("{}/api/oauth/token", self.base))
            .basic_auth(id, Some(secret.expose()))
            .header("Accept", "application/json")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|e| ApiError::transport(&e))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let token = body["access_token"].as_str().filter(|_| status == 200);
        let Some(token) = token else {
            return Err(ApiError {
                status: if status == 200 { 502 } else { status },
                body,
                local: None,
            });
        };
        let life = body["expires_in"].as_u64().unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(life.saturating_sub(60).max(1));
        *held = Some((token.to_string(), until));
        Ok(token.to_string())
    }

    /// The error of `call` as one sentence: which call, what Atlas said, what to do.
    pub fn fail(&self, call: &Call<'_>, e: ApiError) -> Error {
        if let Some(local) = e.local {
            return local;
        }
        let said = e.said();
        let said = crate::secret::scrub(&said, &self.creds.secrets());
        let project = &self.project;
        let fix = match e.status {
            0 => format!(
                "check that this machine reaches {} (a proxy or firewall?); {URL_VAR} overrides the address",
                self.base
            ),
            401 => format!(
                "Atlas did not accept the {}: check {} (and that this machine's address is in the credential's API access list)",
                self.creds.kind(),
                match self.creds {
                    Credentials::ServiceAccount { .. } =>
                        "EFS2ATLAS_ATLAS_CLIENT_ID and EFS2ATLAS_ATLAS_CLIENT_SECRET",
                    Credentials::ApiKey { .. } =>
                        "EFS2ATLAS_ATLAS_PUBLIC_KEY and EFS2ATLAS_ATLAS_PRIVATE_KEY",
                }
            ),
            403 => format!(
                "the {} lacks a role on project {project}: give it {ROLES}",
                self.creds.kind()
            ),
            404 => format!("check --atlas-project ({project}) and --atlas-cluster"),
            406 => "this efs2atlas asks for an API version Atlas no longer serves: install the latest efs2atlas".to_string(),
            429 => "Atlas kept throttling this credential; wait a minute and run the command again".to_string(),
            s if s >= 500 => "Atlas had a problem of its own; try again in a few minutes (status.mongodb.com)".to_string(),
            _ => "see Atlas's message above".to_string(),
        };
        let status = if e.status == 0 {
            String::new()
        } else {
            format!(" ({})", e.status)
        };
        Error::new(
            Kind::Atlas,
            format!(
                "Atlas Admin API, {}, failed{status}: {said}; {fix}",
                call.what
            ),
        )
    }

    /// Sends `call`; its failure as one sentence.
    pub async fn request(&self, call: Call<'_>) -> Result<Value> {
        self.send(&call).await.map_err(|e| self.fail(&call, e))
    }
}

/// How long a `429` asks to wait (`Retry-After` seconds; 2 s when it does not say).
fn retry_after(h: &reqwest::header::HeaderMap) -> Duration {
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(2))
}

/// A failed call: the HTTP status (0: no answer) and Atlas's error document
/// (`{"detail", "error", "errorCode", "parameters", "reason"}`).
#[derive(Debug)]
pub struct ApiError {
    /// The status, 0 when nothing answered.
    pub status: u16,
    /// Atlas's error document, or the transport's message as `{"detail": ...}`.
    pub body: Value,
    local: Option<Error>,
}

impl ApiError {
    fn transport(e: &reqwest::Error) -> ApiError {
        // The URL in a transport error holds no credentials (they travel in headers).
        let why = if e.is_timeout() {
            format!("no answer within {}s", CALL_TIMEOUT.as_secs())
        } else if e.is_connect() {
            "could not connect".to_string()
        } else {
            e.to_string()
        };
        ApiError {
            status: 0,
            body: serde_json::json!({ "detail": why }),
            local: None,
        }
    }

    fn local(e: Error) -> ApiError {
        ApiError {
            status: 0,
            body: Value::Null,
            local: Some(e),
        }
    }

    /// Atlas's `errorCode`, e.g. `DUPLICATE_DATABASE_USERNAME`.
    pub fn code(&self) -> &str {
        self.body["errorCode"].as_str().unwrap_or("")
    }

    /// What Atlas said: its `detail` and `errorCode`.
    pub fn said(&self) -> String {
        let detail = self.body["detail"]
            .as_str()
            .or_else(|| self.body["reason"].as_str())
            .unwrap_or("no explanation given");
        match self.code() {
            "" => detail.to_string(),
            c => format!("{detail} ({c})"),
        }
    }
}
