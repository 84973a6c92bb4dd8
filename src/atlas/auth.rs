//! How efs2atlas signs in to the Atlas Administration API: a service account (OAuth 2.0
//! client credentials; the token is kept for its life) or a legacy programmatic API key
//! (HTTP digest, RFC 7616 with MD5 and `qop=auth`, as Atlas asks for).

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The variables the credentials come from (`../shared/CLI.md`).
pub const CLIENT_ID: &str = "EFS2ATLAS_ATLAS_CLIENT_ID";
/// The service account's secret.
pub const CLIENT_SECRET: &str = "EFS2ATLAS_ATLAS_CLIENT_SECRET";
/// A legacy API key's public part.
pub const PUBLIC_KEY: &str = "EFS2ATLAS_ATLAS_PUBLIC_KEY";
/// A legacy API key's private part.
pub const PRIVATE_KEY: &str = "EFS2ATLAS_ATLAS_PRIVATE_KEY";

/// Credentials for the Admin API.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A service account: client id and secret, exchanged for a bearer token.
    ServiceAccount {
        /// The client id (not secret, but kept out of output all the same).
        id: String,
        /// The client secret.
        secret: Secret,
    },
    /// A legacy programmatic API key, used with HTTP digest.
    ApiKey {
        /// The public key (the digest user name).
        public: String,
        /// The private key (the digest password).
        private: Secret,
    },
}

impl Credentials {
    /// Reads the credentials from the environment (`get` is `std::env::var` outside tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Credentials> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        match (
            get(CLIENT_ID),
            get(CLIENT_SECRET),
            get(PUBLIC_KEY),
            get(PRIVATE_KEY),
        ) {
            (Some(id), Some(secret), _, _) => Ok(Credentials::ServiceAccount {
                id,
                secret: Secret::new(secret),
            }),
            (_, _, Some(public), Some(private)) => Ok(Credentials::ApiKey {
                public,
                private: Secret::new(private),
            }),
            (Some(_), None, _, _) => Err(Error::usage(format!(
                "{CLIENT_ID} is set but {CLIENT_SECRET} is not: set both (the Atlas service account's client id and secret)"
            ))),
            (_, _, Some(_), None) | (_, _, None, Some(_)) => Err(Error::usage(format!(
                "set both {PUBLIC_KEY} and {PRIVATE_KEY} (the Atlas API key's two parts), or a service account in {CLIENT_ID}/{CLIENT_SECRET}"
            ))),
            _ => Err(Error::usage(format!(
                "--atlas-project needs Atlas API credentials: a service account in {CLIENT_ID} and {CLIENT_SECRET} (Atlas: Organization > Access Manager > Service Accounts; give it Project Owner, or Project Database Access Admin + Project Network Access Manager, on the project), or a legacy API key in {PUBLIC_KEY} and {PRIVATE_KEY}"
            ))),
        }
    }

    /// What the credentials are, for messages (never the secret part).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::ServiceAccount { .. } => "service account",
            Credentials::ApiKey { .. } => "API key",
        }
    }

    /// The secrets to scrub from anything quoted back.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Credentials::ServiceAccount { secret, .. } => vec![secret],
            Credentials::ApiKey { private, .. } => vec![private],
        }
    }
}

/// A digest challenge's parts (`WWW-Authenticate: Digest realm="...", nonce="...", ...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    /// The realm.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Its opaque value, echoed back when given.
    pub opaque: Option<String>,
    /// `auth` when the server offers it.
    pub qop: Option<String>,
}

/// Parses a digest challenge; `None` when the header is not one.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let rest = header.trim().strip_prefix("Digest")?.trim();
    let mut c = Challenge::default();
    for (k, v) in params(rest) {
        match k.to_ascii_lowercase().as_str() {
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "opaque" => c.opaque = Some(v),
            "qop" => {
                c.qop = v
                    .split(',')
                    .map(str::trim)
                    .find(|q| *q == "auth")
                    .map(str::to_string)
            }
            _ => {}
        }
    }
    (!c.nonce.is_empty()).then_some(c)
}

/// `k=v` and `k="v, w"` pairs separated by commas.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = &rest[eq + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            let v = quoted[..end].to_string();
            rest = quoted.get(end + 1..).unwrap_or("");
            v
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let v = rest[..end].trim().to_string();
            rest = &rest[end..];
            v
        };
        out.push((key, value));
        rest = rest.trim_start().trim_start_matches(',');
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

/// The `Authorization` header answering `c` for `method` on `uri` (path and query).
pub fn digest_header(
    c: &Challenge,
    user: &str,
    password: &Secret,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{}:{}", c.realm, password.expose()));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let nc = "00000001";
    let (response, qop) = match &c.qop {
        Some(q) => (
            md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:{q}:{ha2}", c.nonce)),
            format!(", qop={q}, nc={nc}, cnonce=\"{cnonce}\""),
        ),
        None => (md5_hex(&format!("{ha1}:{}:{ha2}", c.nonce)), String::new()),
    };
    let opaque = c
        .opaque
        .as_ref()
        .map(|o| format!(", opaque=\"{o}\""))
        .unwrap_or_default();
    format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm=MD5, response=\"{response}\"{qop}{opaque}",
        c.realm, c.nonce
    )
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| {
        Error::other(format!(
            "the operating system gave no random bytes ({e}); efs2atlas needs them for passwords"
        ))
    })?;
    Ok(b)
}

/// A password of `len` characters from letters and digits (safe anywhere in a URI), drawn
/// without bias from the operating system's random source.
pub fn generate_password(len: usize) -> Result<Secret> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(64)? {
            // 62 * 4 = 248: bytes above it are dropped so every character is equally likely.
            if (b as usize) < ALPHABET.len() * 4 && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(Secret::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_environment_with_a_sentence_when_half_set() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = Credentials::from_env(env(&[(CLIENT_ID, "id"), (CLIENT_SECRET, "s3")])).unwrap();
        assert_eq!(c.kind(), "service account");
        let c = Credentials::from_env(env(&[(PUBLIC_KEY, "pub"), (PRIVATE_KEY, "k3y-s3cr3t")]))
            .unwrap();
        assert_eq!(c.kind(), "API key");
        let e = Credentials::from_env(env(&[(CLIENT_ID, "id")])).unwrap_err();
        assert!(e.message.contains(CLIENT_SECRET), "{e}");
        let e = Credentials::from_env(env(&[])).unwrap_err();
        assert!(e.message.contains("Project Owner"), "{e}");
        assert!(!format!("{c:?}").contains("k3y-s3cr3t"));
    }

    /// RFC 2617's worked example (section 3.5).
    #[test]
    fn digest_answers_as_rfc_2617_computes() {
        let c = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(c.qop.as_deref(), Some("auth"));
        let h = digest_header(
            &c,
            "Mufasa",
            &Secret::new("Circle Of Life"),
            "GET",
            "/dir/index.html",
            "0a4f113b",
        );
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        assert!(h.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#));
        assert!(parse_challenge("Bearer x").is_none());
    }

    #[test]
    fn generated_passwords_are_long_uri_safe_and_differ() {
        let a = generate_password(32).unwrap();
        let b = generate_password(32).unwrap();
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
