//! Compression on the wire (OP_COMPRESSED): Atlas is far away, and every byte to it is
//! billed (NAT processing, internet egress). The client offers, the server picks; when a URI
//! names no `compressors`, efs2atlas offers zstd, snappy and zlib; a URI's own `compressors=`
//! is honoured; `--compressors` (journaled, so `resume` and the runner use the same) overrides
//! both. A server that offers none is talked to uncompressed.

use std::sync::OnceLock;

use mongodb::options::{ClientOptions, Compressor};

use crate::error::{Error, Result};
use crate::uri::MongoUri;

/// The zstd level. Level 1 compresses at several hundred MB/s on one core (the runner has 1
/// vCPU by default), far above the links to Atlas, and already reaches most of zstd's ratio
/// on app documents; higher levels cost CPU the copy needs.
pub const ZSTD_LEVEL: i32 = 1;

/// What `--compressors` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// No flag: the URI's `compressors=`, else zstd, snappy, zlib.
    Default,
    /// `none`: uncompressed, whatever the URI says.
    Off,
    /// These, in this order of preference.
    List(Vec<String>),
}

/// The names `--compressors` takes.
pub const NAMES: &[&str] = &["zstd", "snappy", "zlib"];

impl Choice {
    /// Parses `none` or a comma-separated list of `zstd`, `snappy`, `zlib`.
    pub fn parse(text: &str) -> Result<Choice> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(Choice::Off);
        }
        let list: Vec<String> = t
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|c| !NAMES.contains(&c.as_str())) {
            return Err(Error::usage(format!(
                "--compressors '{text}': give none, or a list of {} (e.g. zstd,snappy)",
                NAMES.join(", ")
            )));
        }
        Ok(Choice::List(list))
    }

    /// The flag's value as given (`None` for no flag), for the journal.
    pub fn text(&self) -> Option<String> {
        match self {
            Choice::Default => None,
            Choice::Off => Some("none".into()),
            Choice::List(l) => Some(l.join(",")),
        }
    }
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// Sets this process's choice (once, before the first connection).
pub fn set(choice: Choice) {
    let _ = CHOICE.set(choice);
}

fn compressor(name: &str) -> Option<Compressor> {
    match name {
        "zstd" => Some(Compressor::Zstd {
            level: Some(ZSTD_LEVEL),
        }),
        "snappy" => Some(Compressor::Snappy),
        "zlib" => Some(Compressor::Zlib { level: None }),
        _ => None,
    }
}

/// Applies the choice to a connection's options.
pub fn apply(opts: &mut ClientOptions, uri: &MongoUri) {
    let named_in_uri = uri
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv.to_ascii_lowercase().starts_with("compressors="));
    match CHOICE.get().unwrap_or(&Choice::Default) {
        Choice::Default if named_in_uri => {}
        Choice::Default => {
            opts.compressors = Some(NAMES.iter().filter_map(|n| compressor(n)).collect());
        }
        Choice::Off => opts.compressors = None,
        Choice::List(l) => {
            opts.compressors = Some(l.iter().filter_map(|n| compressor(n)).collect());
        }
    }
}

/// What crossed the wire during a data run, as the two servers counted it
/// (`serverStatus.network`: every client of theirs, which on a migration's target is this
/// run). `None` where a server does not say (Atlas's shared tiers report a subset).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct WireReport {
    /// Bytes the target received (what went to Atlas).
    pub to_target: Option<u64>,
    /// Bytes the target sent.
    pub from_target: Option<u64>,
    /// Bytes the source sent (what was read).
    pub from_source: Option<u64>,
    /// Bytes the source received.
    pub to_source: Option<u64>,
    /// The documents' size over the bytes to the target (2.0: half the data crossed).
    pub compression_ratio: Option<f64>,
}

/// A server's `(bytesIn, bytesOut)` so far.
pub async fn counters(m: &crate::mongo::Mongo) -> Option<(u64, u64)> {
    use mongodb::bson::doc;
    let s = m
        .client
        .database("admin")
        .run_command(doc! {"serverStatus": 1, "repl": 0, "metrics": 0, "locks": 0, "wiredTiger": 0})
        .await
        .ok()?;
    let net = s.get_document("network").ok()?;
    let n = |k: &str| {
        net.get(k)
            .and_then(crate::mongo::as_i64)
            .map(|v| v.max(0) as u64)
    };
    // bytesIn/Out count messages once decompressed; physicalBytesIn/Out (4.2 and newer) are
    // what crossed the wire.
    let pick = |physical: &str, logical: &str| n(physical).or_else(|| n(logical));
    Some((
        pick("physicalBytesIn", "bytesIn")?,
        pick("physicalBytesOut", "bytesOut")?,
    ))
}

/// The counters of both servers, taken before a run.
pub struct WireStart(Option<(u64, u64)>, Option<(u64, u64)>);

impl WireStart {
    /// Reads both servers' counters.
    pub async fn take(src: &crate::mongo::Mongo, dst: &crate::mongo::Mongo) -> WireStart {
        let (s, d) = tokio::join!(counters(src), counters(dst));
        WireStart(s, d)
    }

    /// What crossed since, for `data` bytes of documents copied.
    pub async fn since(
        &self,
        src: &crate::mongo::Mongo,
        dst: &crate::mongo::Mongo,
        data: u64,
    ) -> WireReport {
        let (s, d) = tokio::join!(counters(src), counters(dst));
        let delta = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| match (a, b) {
            (Some(a), Some(b)) => (Some(b.0.saturating_sub(a.0)), Some(b.1.saturating_sub(a.1))),
            _ => (None, None),
        };
        let (to_source, from_source) = delta(self.0, s);
        let (to_target, from_target) = delta(self.1, d);
        WireReport {
            to_target,
            from_target,
            from_source,
            to_source,
            compression_ratio: to_target
                .filter(|t| *t > 0 && data > 0)
                .map(|t| data as f64 / t as f64),
        }
    }
}

impl WireReport {
    /// `; 12.3 MiB to Atlas on the wire (0.41× the data)`, or nothing when not counted.
    pub fn summary(&self, data: u64) -> String {
        match self.to_target {
            Some(t) if data > 0 => format!(
                "; {} to the target on the wire ({:.2}× the data)",
                crate::units::bytes(t as i64),
                t as f64 / data as f64
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_takes_none_or_a_list() {
        assert_eq!(Choice::parse("none").unwrap(), Choice::Off);
        assert_eq!(
            Choice::parse("zstd, snappy").unwrap(),
            Choice::List(vec!["zstd".into(), "snappy".into()])
        );
        let e = Choice::parse("lz4").unwrap_err();
        assert!(e.message.contains("zstd, snappy, zlib"), "{e}");
        assert_eq!(
            Choice::parse("zlib").unwrap().text().as_deref(),
            Some("zlib")
        );
    }
}
