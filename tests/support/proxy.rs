//! A small fault-injecting HTTP proxy in front of moto (loopback only): it forwards every
//! request unless a rule says to answer it with a canned error instead (throttling, 5xx,
//! DependencyViolation, FileSystemInUse, or a stall).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A canned answer for matching requests.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Substring of "METHOD PATH | X-Amz-Target | body" that selects requests.
    pub matches: String,
    /// How many more requests to answer this way.
    pub times: usize,
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
    /// Sleep before answering (or forwarding, when `status` is 0).
    pub delay: Duration,
}

/// A change to forwarded answers: in the body of an answer to a matching request that
/// contains `when`, every `from` becomes `to`.
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// Substring of the request summary (as for [`Rule::matches`]).
    pub matches: String,
    /// Only answers whose body contains this.
    pub when: String,
    /// Text replaced.
    pub from: String,
    /// Its replacement.
    pub to: String,
}

/// The running proxy.
pub struct FaultProxy {
    /// Its base URL (use as AWS_ENDPOINT_URL).
    pub url: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    rewrites: Arc<Mutex<Vec<Rewrite>>>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:5000`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let up = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let rewrites: Arc<Mutex<Vec<Rewrite>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, w, s) = (rules.clone(), rewrites.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (r, w, s, up) = (r.clone(), w.clone(), s.clone(), up.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &up, r, w, s).await;
                });
            }
        });
        FaultProxy {
            url,
            rules,
            rewrites,
            seen,
            task,
        }
    }

    /// Answers the next `times` requests matching `matches` with this status, headers and body.
    pub fn inject(
        &self,
        matches: &str,
        times: usize,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) {
        self.rules.lock().unwrap().push(Rule {
            matches: matches.into(),
            times,
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            delay: Duration::ZERO,
        });
    }

    /// ECS/Secrets Manager style JSON error (`{"__type": code}`), e.g. ThrottlingException.
    pub fn inject_json_error(&self, matches: &str, times: usize, status: u16, code: &str) {
        let body = format!("{{\"__type\":\"{code}\",\"message\":\"injected by the test proxy\"}}");
        self.inject(
            matches,
            times,
            status,
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("x-amzn-ErrorType", code),
            ],
            &body,
        );
    }

    /// EC2 style XML error, e.g. DependencyViolation.
    pub fn inject_ec2_error(&self, matches: &str, times: usize, code: &str) {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error></Errors><RequestID>x</RequestID></Response>"
        );
        self.inject(matches, times, 400, &[("Content-Type", "text/xml")], &body);
    }

    /// EFS style REST error, e.g. FileSystemInUse (409).
    pub fn inject_efs_error(&self, matches: &str, times: usize, status: u16, code: &str) {
        let body =
            format!("{{\"ErrorCode\":\"{code}\",\"Message\":\"injected by the test proxy\"}}");
        self.inject(
            matches,
            times,
            status,
            &[
                ("Content-Type", "application/json"),
                ("x-amzn-ErrorType", code),
            ],
            &body,
        );
    }

    /// Forwards every request matching `matches` after `delay`, like a slow region would.
    pub fn add_latency(&self, matches: &str, delay: Duration) {
        self.inject_stall(matches, usize::MAX, delay);
    }

    /// Holds the next `times` matching requests for `delay` before forwarding them (a client
    /// with a shorter timeout gives up first; the request still reaches AWS late, as it can).
    pub fn inject_stall(&self, matches: &str, times: usize, delay: Duration) {
        self.rules.lock().unwrap().push(Rule {
            matches: matches.into(),
            times,
            status: 0,
            headers: Vec::new(),
            body: String::new(),
            delay,
        });
    }

    /// Rewrites answers from now on (see [`Rewrite`]).
    pub fn rewrite(&self, matches: &str, when: &str, from: &str, to: &str) {
        self.rewrites.lock().unwrap().push(Rewrite {
            matches: matches.into(),
            when: when.into(),
            from: from.into(),
            to: to.into(),
        });
    }

    /// Every request summary seen so far that contains `matches`.
    pub fn count(&self, matches: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.contains(matches))
            .count()
    }
}

/// Reads one request head into `buf`; its length, or None at end of stream.
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one whole request (head and `Content-Length` body) out of `buf` and the stream:
/// the head's length and the request's bytes, or None at end of stream.
pub async fn read_request<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(usize, Vec<u8>)>> {
    let Some(head_len) = read_head(conn, buf).await? else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_len + len {
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head_len, buf.drain(..head_len + len).collect())))
}

/// A whole HTTP answer with its body rewritten and its Content-Length set to match.
fn rewritten(resp: &[u8], changes: &[Rewrite]) -> Vec<u8> {
    let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return resp.to_vec();
    };
    let head = String::from_utf8_lossy(&resp[..i]).to_string();
    let mut body = String::from_utf8_lossy(&resp[i + 4..]).to_string();
    for w in changes {
        if body.contains(&w.when) {
            body = body.replace(&w.from, &w.to);
        }
    }
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// The value of header `name` in a request or response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve(
    mut conn: TcpStream,
    up: &str,
    rules: Arc<Mutex<Vec<Rule>>>,
    rewrites: Arc<Mutex<Vec<Rewrite>>>,
    seen: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((head_len, request)) = read_request(&mut conn, &mut buf).await? else {
            return Ok(());
        };
        let head = String::from_utf8_lossy(&request[..head_len]).to_string();
        let body = String::from_utf8_lossy(&request[head_len..]).to_string();
        let first = head.lines().next().unwrap_or("").to_string();
        let summary = format!(
            "{first} | {} | {}",
            header(&head, "x-amz-target").unwrap_or(""),
            body
        );
        seen.lock().unwrap().push(summary.clone());
        let rule = {
            let mut rs = rules.lock().unwrap();
            rs.iter_mut()
                .find(|r| r.times > 0 && summary.contains(&r.matches))
                .map(|r| {
                    r.times -= 1;
                    r.clone()
                })
        };
        if let Some(r) = &rule {
            tokio::time::sleep(r.delay).await;
        }
        if let Some(r) = rule.filter(|r| r.status != 0) {
            let mut resp = format!(
                "HTTP/1.1 {} Injected\r\nContent-Length: {}\r\n",
                r.status,
                r.body.len()
            );
            for (k, v) in &r.headers {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            resp.push_str(&r.body);
            conn.write_all(resp.as_bytes()).await?;
            continue;
        }
        // Forward with Connection: close and relay the whole answer.
        let mut upstream = TcpStream::connect(up).await?;
        let mut fwd = String::new();
        for (i, line) in head[..head_len].split("\r\n").enumerate() {
            if line.is_empty() {
                continue;
            }
            if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            fwd.push_str(line);
            fwd.push_str("\r\n");
        }
        fwd.push_str("Connection: close\r\n\r\n");
        upstream.write_all(fwd.as_bytes()).await?;
        upstream.write_all(&request[head_len..]).await?;
        let mut resp = Vec::new();
        upstream.read_to_end(&mut resp).await?;
        let changes: Vec<Rewrite> = rewrites
            .lock()
            .unwrap()
            .iter()
            .filter(|w| summary.contains(&w.matches))
            .cloned()
            .collect();
        if !changes.is_empty() {
            resp = rewritten(&resp, &changes);
        }
        let resp_head = String::from_utf8_lossy(&resp[..resp.len().min(4096)]).to_string();
        let has_len = header(&resp_head, "content-length").is_some();
        conn.write_all(&resp).await?;
        if !has_len {
            return Ok(());
        }
    }
}
