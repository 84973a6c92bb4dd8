//! MongoDB connection strings: parsed by the driver's `ConnectionString` (synchronous, no
//! DNS lookups for `mongodb+srv://`), wrapped so they are redacted for display, and the
//! fields env-var templates are filled from.

use mongodb::error::ErrorKind;
use mongodb::options::ConnectionString;

use crate::error::Error;
use crate::secret::{REDACTED, Secret};

/// A parsed `mongodb://` or `mongodb+srv://` connection string.
#[derive(Clone, Debug)]
pub struct MongoUri {
    /// `mongodb` or `mongodb+srv`.
    pub scheme: String,
    /// Percent-decoded user name, if the URI has one.
    pub user: Option<String>,
    /// Percent-decoded password, if the URI has one.
    pub password: Option<Secret>,
    /// The host list as written (`h1:27017,h2:27017` or the SRV name).
    pub hosts: String,
    /// Percent-decoded default database from the path, if any.
    pub db: Option<String>,
    /// The query string without `?`, as written.
    pub query: Option<String>,
    raw: Secret,
}

/// Query options whose values can carry credentials.
const SECRET_OPTIONS: &[&str] = &["authmechanismproperties", "tlscertificatekeyfilepassword"];

/// Characters that must be percent-encoded in the user or password part.
const USERINFO_RESERVED: &[char] = &[':', '/', '?', '#', '[', ']', '@'];

impl MongoUri {
    /// True when the URI asks for TLS (`tls=true`/`ssl=true`, or `mongodb+srv`, where it is
    /// the default).
    pub fn tls_requested(&self) -> bool {
        let on = |v: &str| v.eq_ignore_ascii_case("true");
        let explicit = self.query.as_deref().and_then(|q| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.eq_ignore_ascii_case("tls") || k.eq_ignore_ascii_case("ssl")).then(|| on(v))
            })
        });
        explicit.unwrap_or(self.scheme == "mongodb+srv")
    }

    /// Parses `text` with the driver's own parser (synchronous: no DNS lookup, even for
    /// `mongodb+srv://`); `what` names the flag in errors (e.g. `--atlas-uri`). Query options
    /// are kept as written and checked by the driver when it connects.
    pub fn parse(what: &str, text: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::usage(format!("{what} is not a valid MongoDB URI: {why}"));
        let text = text.trim();
        let scheme = ["mongodb+srv", "mongodb"]
            .into_iter()
            .find(|s| text.starts_with(&format!("{s}://")))
            .ok_or_else(|| {
                bad("it must start with mongodb:// or mongodb+srv:// (copy it from Atlas: Connect → Drivers)".into())
            })?;
        let rest = &text[scheme.len() + 3..];
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q.to_string())),
            None => (rest, None),
        };
        let (userinfo, hostpath) = match before_query.rfind('@') {
            Some(i) => (Some(&before_query[..i]), &before_query[i + 1..]),
            None => (None, before_query),
        };
        if let Some(ui) = userinfo {
            check_userinfo(ui).map_err(|why| bad(why.into()))?;
        }
        let hosts = hostpath.split_once('/').map_or(hostpath, |(h, _)| h);
        if hosts.is_empty() || hosts.split(',').any(|h| h.trim().is_empty()) {
            return Err(bad("the host is missing".into()));
        }
        let cs = ConnectionString::parse(format!("{scheme}://{before_query}")).map_err(|e| {
            let message = match e.kind.as_ref() {
                ErrorKind::InvalidArgument { message, .. } => message.clone(),
                _ => e.to_string(),
            };
            // The driver never quotes credentials; scrub anyway, in case a later one does.
            bad(crate::secret::scrub(
                &message,
                &[&Secret::new(userinfo.unwrap_or(""))],
            ))
        })?;
        let (user, password) = match cs.credential {
            Some(c) => (c.username, c.password.map(Secret::new)),
            None => (None, None),
        };
        Ok(MongoUri {
            scheme: scheme.to_string(),
            user,
            password,
            hosts: hosts.to_string(),
            db: cs.default_database,
            query,
            raw: Secret::new(text),
        })
    }

    /// The URI exactly as given; do not print.
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// The whole URI as a secret (for template `{uri}`).
    pub fn secret(&self) -> &Secret {
        &self.raw
    }

    /// The URI with the password and credential-bearing options replaced by `****`.
    pub fn redacted(&self) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(u) = &self.user {
            out.push_str(&percent_encode(u));
            if self.password.is_some() {
                out.push(':');
                out.push_str(REDACTED);
            }
            out.push('@');
        }
        out.push_str(&self.hosts);
        if let Some(db) = &self.db {
            out.push('/');
            out.push_str(&percent_encode(db));
        } else if self.query.is_some() {
            out.push('/');
        }
        if let Some(q) = &self.query {
            out.push('?');
            let parts: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if SECRET_OPTIONS.contains(&k.to_ascii_lowercase().as_str()) => {
                        format!("{k}={REDACTED}")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(&parts.join("&"));
        }
        out
    }

    /// The same server and options, signed in as `user` (defined in `admin`).
    pub fn with_login(&self, user: &str, password: &Secret) -> Result<MongoUri, Error> {
        let mut text = format!(
            "{}://{}:{}@{}/",
            self.scheme,
            percent_encode(user),
            percent_encode(password.expose()),
            self.hosts
        );
        if let Some(db) = &self.db {
            text.push_str(&percent_encode(db));
        }
        // A user defined in admin (as Atlas's are) signs in there whatever the path says.
        let mut query: Vec<String> = self
            .query
            .iter()
            .flat_map(|q| q.split('&'))
            .filter(|kv| !kv.is_empty() && !kv.to_ascii_lowercase().starts_with("authsource="))
            .map(str::to_string)
            .collect();
        query.push("authSource=admin".into());
        text.push('?');
        text.push_str(&query.join("&"));
        MongoUri::parse("the migration user's URI", &text)
    }

    /// True when the URI carries a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Every host name (without ports) the URI names.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts
            .split(',')
            .map(|h| {
                let h = h.trim();
                if let Some(rest) = h.strip_prefix('[') {
                    rest.split(']').next().unwrap_or(rest).to_string()
                } else {
                    h.split(':').next().unwrap_or(h).to_string()
                }
            })
            .collect()
    }

    /// True when every host is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.host_names()
            .iter()
            .all(|h| h == "localhost" || h == "::1" || h.starts_with("127."))
    }
}

/// Says which part of the credentials is wrong, in words the user can act on (the driver
/// only says "must be URL encoded").
fn check_userinfo(ui: &str) -> Result<(), &'static str> {
    let (u, p) = ui.split_once(':').map_or((ui, None), |(u, p)| (u, Some(p)));
    if u.contains(USERINFO_RESERVED) {
        return Err(
            "the user name contains a reserved character (: / ? # [ ] @) that is not percent-encoded",
        );
    }
    if let Some(p) = p {
        if p.contains(USERINFO_RESERVED) {
            return Err(
                "the password contains a reserved character (: / ? # [ ] @) that is not percent-encoded; encode it (e.g. @ as %40)",
            );
        }
        if percent_decode(p).is_none() {
            return Err("the password has a broken %-escape");
        }
    }
    if percent_decode(u).is_none() {
        return Err("the user name has a broken %-escape");
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` on a broken escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but unreserved characters (RFC 3986) as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_asked_for_explicitly_or_by_srv() {
        let t = |u: &str| MongoUri::parse("x", u).unwrap().tls_requested();
        assert!(t("mongodb+srv://a:b@c0.x.mongodb.net/"));
        assert!(!t("mongodb+srv://a:b@c0.x.mongodb.net/?tls=false"));
        assert!(t(
            "mongodb://h:1/?replicaSet=rs0&tls=true&tlsCAFile=/ca.pem"
        ));
        assert!(t("mongodb://h:1/?SSL=true"));
        assert!(!t("mongodb://h:1/?replicaSet=rs0"));
        assert!(!t("mongodb://h:1"));
    }

    #[test]
    fn parses_atlas_srv_uri() {
        let u = MongoUri::parse(
            "--atlas-uri",
            "mongodb+srv://app:p%40ss%3Aw0rd@cluster0.ab12c.mongodb.net/shop?retryWrites=true&w=majority",
        )
        .unwrap();
        assert_eq!(u.scheme, "mongodb+srv");
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_ref().unwrap().expose(), "p@ss:w0rd");
        assert_eq!(u.hosts, "cluster0.ab12c.mongodb.net");
        assert_eq!(u.db.as_deref(), Some("shop"));
        assert_eq!(
            u.redacted(),
            "mongodb+srv://app:****@cluster0.ab12c.mongodb.net/shop?retryWrites=true&w=majority"
        );
        assert!(!u.redacted().contains("p%40ss"));
    }

    #[test]
    fn parses_plain_multi_host_without_credentials() {
        let u =
            MongoUri::parse("--source-uri", "mongodb://127.0.0.1:27017,127.0.0.1:27018").unwrap();
        assert!(u.user.is_none() && u.password.is_none() && u.db.is_none());
        assert_eq!(u.host_names(), vec!["127.0.0.1", "127.0.0.1"]);
        assert!(u.is_loopback());
        assert_eq!(u.redacted(), "mongodb://127.0.0.1:27017,127.0.0.1:27018");
    }

    #[test]
    fn redacts_credential_options() {
        let u = MongoUri::parse(
            "x",
            "mongodb+srv://c.mongodb.net/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:abc",
        )
        .unwrap();
        assert!(!u.redacted().contains("abc"));
    }

    #[test]
    fn rejects_malformed_uris_with_a_reason_and_no_secret() {
        for (text, why) in [
            ("http://x", "must start with"),
            ("mongodb+srv://u:p@a.net,b.net/db", "exactly one host"),
            (
                "mongodb+srv://u:p@a.net:27017/db",
                "port cannot be specified",
            ),
            ("mongodb://u:p@/db", "host is missing"),
            ("mongodb://u:se/cret@h/db", "password contains a reserved"),
            ("mongodb://u:pa:ss@h/db", "password contains a reserved"),
            ("mongodb://u:pa%zzss@h/db", "broken %-escape"),
            ("mongodb://h:notaport/db", "invalid server address"),
        ] {
            let e = MongoUri::parse("--atlas-uri", text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(
                !e.contains("cret") && !e.contains("pa:ss") && !e.contains("zzss"),
                "{e}"
            );
        }
    }

    #[test]
    fn percent_round_trip() {
        let s = "p@ss:/wörd";
        assert_eq!(percent_decode(&percent_encode(s)).unwrap(), s);
    }
}
