//! A string that must never be printed: passwords, URIs with credentials, secret env values.

use std::fmt;

/// What every redacted value is shown as.
pub const REDACTED: &str = "****";

/// A secret string whose `Debug`, `Display` and `Serialize` all show `****`.
///
/// The only way to the real value is [`Secret::expose`], so every place that uses the
/// secret is greppable.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the user or from AWS.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value; callers must not print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Removes every occurrence of each secret from `text` (for messages that quote
/// server or SDK errors, which may echo what we sent).
pub fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.0.len() >= 3 {
            out = out.replace(&s.0, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_value() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s}"), "****");
        assert_eq!(format!("{s:?}"), "****");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"****\"");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn scrub_removes_secret_from_text() {
        let s = Secret::new("hunter22");
        assert_eq!(
            scrub("auth failed for hunter22!", &[&s]),
            "auth failed for ****!"
        );
    }
}
