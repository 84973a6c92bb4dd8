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

/// Sets this process's choice from `--compressors` or its journaled copy (`None`: the
/// default), and returns it.
pub fn set_from(setting: Option<&str>) -> Result<Choice> {
    let choice = match setting {
        Some(s) => Choice::parse(s)?,
        None => Choice::Default,
    };
    set(choice.clone());
    Ok(choice)
}

/// Copies of a message the driver holds on top of its plain ones while compressing or
/// decompressing it (the plain and the compressed message at once): 1 unless this process
/// sends everything uncompressed. The memory budgets count it, so a slow link that fills
/// them stays within the same bound.
pub fn compression_copies() -> usize {
    usize::from(!matches!(CHOICE.get(), Some(Choice::Off)))
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
