//! Which app env vars point at Mongo, and what they become: `NAME=TEMPLATE` with fields
//! `{uri} {user} {password} {host} {db}` filled from the Atlas URI.

use crate::error::{Error, Result};
use crate::secret::{REDACTED, Secret};
use crate::uri::MongoUri;

/// A field a template can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The whole Atlas URI.
    Uri,
    /// The user name.
    User,
    /// The password.
    Password,
    /// The host list.
    Host,
    /// The database name.
    Db,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "uri" => Field::Uri,
            "user" => Field::User,
            "password" => Field::Password,
            "host" => Field::Host,
            "db" => Field::Db,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Uri => "uri",
            Field::User => "user",
            Field::Password => "password",
            Field::Host => "host",
            Field::Db => "db",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Field(Field),
}

/// A parsed template such as `mongodb+srv://{user}:{password}@{host}/{db}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    text: String,
}

impl Template {
    /// Parses a template; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(Error::usage(format!(
                            "template '{text}' has a '{{' without a closing '}}' (write {{{{ for a literal brace)"
                        )));
                    }
                    let field = Field::parse(name.trim()).ok_or_else(|| {
                        Error::usage(format!(
                            "template '{text}' names an unknown field {{{name}}}; the fields are {{uri}} {{user}} {{password}} {{host}} {{db}}"
                        ))
                    })?;
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(field));
                }
                '}' => {
                    return Err(Error::usage(format!(
                        "template '{text}' has a '}}' without an opening '{{' (write }}}} for a literal brace)"
                    )));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            parts,
            text: text.to_string(),
        })
    }

    /// A template that is one field.
    pub fn field(f: Field) -> Template {
        Template {
            parts: vec![Part::Field(f)],
            text: format!("{{{}}}", f.name()),
        }
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the template names `f`.
    pub fn uses(&self, f: Field) -> bool {
        self.parts.contains(&Part::Field(f))
    }

    /// True when the rendered value carries a credential.
    pub fn is_sensitive(&self, atlas: &MongoUri) -> bool {
        self.uses(Field::Password) || (self.uses(Field::Uri) && atlas.has_password())
    }

    /// Fills the template. `db` is the database name to use for `{db}`.
    pub fn render(&self, atlas: &MongoUri, db: Option<&str>) -> Result<Secret> {
        self.render_with(atlas, db, false).map(Secret::new)
    }

    /// Fills the template with credentials masked, for display.
    pub fn render_shown(&self, atlas: &MongoUri, db: Option<&str>) -> Result<String> {
        self.render_with(atlas, db, true)
    }

    fn render_with(&self, atlas: &MongoUri, db: Option<&str>, masked: bool) -> Result<String> {
        let mut out = String::new();
        // Only the template's own text decides: a `{uri}` value holds `://` too, but a
        // field written after it is not inside the template's connection string.
        let mut written = String::new();
        for p in &self.parts {
            // Inside a connection string (after its `scheme://`) a user name, password or
            // database name is percent-encoded, as the URI syntax needs: a password holding
            // `@ : / ? # [ ] %` would otherwise break the URI the app is given. Bare values
            // (MONGODB_PASSWORD={password}) stay as they are.
            let in_uri = written.contains("://");
            let enc = |v: &str| {
                if in_uri {
                    crate::uri::percent_encode(v)
                } else {
                    v.to_string()
                }
            };
            match p {
                Part::Lit(s) => {
                    written.push_str(s);
                    out.push_str(s)
                }
                Part::Field(Field::Uri) => {
                    if masked {
                        out.push_str(&atlas.redacted())
                    } else {
                        out.push_str(atlas.expose())
                    }
                }
                Part::Field(Field::User) => out.push_str(&enc(atlas.user.as_deref().ok_or_else(
                    || {
                        Error::usage(format!(
                            "template '{}' uses {{user}} but the Atlas URI has no user name; put user:password@ in --atlas-uri",
                            self.text
                        ))
                    },
                )?)),
                Part::Field(Field::Password) => {
                    let p = atlas.password.as_ref().ok_or_else(|| {
                        Error::usage(format!(
                            "template '{}' uses {{password}} but the Atlas URI has no password; put user:password@ in --atlas-uri",
                            self.text
                        ))
                    })?;
                    out.push_str(&if masked {
                        REDACTED.to_string()
                    } else {
                        enc(p.expose())
                    });
                }
                Part::Field(Field::Host) => out.push_str(&atlas.hosts),
                Part::Field(Field::Db) => out.push_str(&enc(db.ok_or_else(|| {
                    Error::usage(format!(
                        "template '{}' uses {{db}} but no database name is known: add /DBNAME to --atlas-uri",
                        self.text
                    ))
                })?)),
            }
        }
        Ok(out)
    }
}

/// One `--env NAME=TEMPLATE` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvOverride {
    /// The env var name.
    pub name: String,
    /// What it becomes.
    pub template: Template,
}

impl EnvOverride {
    /// Parses `NAME=TEMPLATE`.
    pub fn parse(text: &str) -> Result<EnvOverride> {
        let (name, tpl) = text.split_once('=').ok_or_else(|| {
            Error::usage(format!(
                "--env '{text}' must be NAME=TEMPLATE, e.g. --env MONGO_URI={{uri}} or --env DB_HOST={{host}}"
            ))
        })?;
        let name = name.trim();
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::usage(format!(
                "--env '{name}': an env var name takes letters, digits and _ and does not start with a digit"
            )));
        }
        Ok(EnvOverride {
            name: name.to_string(),
            template: Template::parse(tpl)?,
        })
    }
}

/// Guesses what a Mongo-related env var holds from its name and current value.
///
/// `None` means the variable does not look like Mongo configuration.
pub fn detect(name: &str, value: Option<&str>) -> Option<Template> {
    let upper = name.to_ascii_uppercase();
    if let Some(v) = value
        && is_mongo_uri(v)
    {
        return Some(Template::field(Field::Uri));
    }
    if !upper.contains("MONGO") {
        return None;
    }
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| upper.ends_with(s));
    if ends(&["PASSWORD", "PASS", "PWD", "PASSWD"]) {
        if upper.contains("INITDB") {
            return None;
        }
        return Some(Template::field(Field::Password));
    }
    if ends(&["USERNAME", "USER", "USR"]) {
        if upper.contains("INITDB") {
            return None;
        }
        return Some(Template::field(Field::User));
    }
    if ends(&[
        "URI",
        "URL",
        "CONNECTION_STRING",
        "CONNECTIONSTRING",
        "CONN_STR",
        "DSN",
    ]) {
        // A bare host in *_URL (the seed's MONGODB_URL=localhost) becomes {host}; a full
        // connection string (or a secret we cannot see) becomes {uri}.
        return Some(match value {
            Some(v) if !is_mongo_uri(v) => Template::field(Field::Host),
            _ => Template::field(Field::Uri),
        });
    }
    if ends(&["HOST", "HOSTNAME", "SERVER"]) {
        return Some(Template::field(Field::Host));
    }
    if ends(&[
        "NAME",
        "DB",
        "DATABASE",
        "DBNAME",
        "DB_NAME",
        "DATABASE_NAME",
    ]) && !upper.contains("INITDB")
    {
        return Some(Template::field(Field::Db));
    }
    None
}

/// True when `v` holds a character a URI reserves in its user-info part (`: / ? # [ ] @`) or
/// the escape character `%`: an app that builds its connection string by plain
/// interpolation (`mongodb+srv://${USER}:${PASSWORD}@…`) breaks on such a value.
pub fn has_uri_reserved(v: &str) -> bool {
    v.chars().any(|c| ":/?#[]@%".contains(c))
}

/// True when `v` is a MongoDB connection string.
pub fn is_mongo_uri(v: &str) -> bool {
    let v = v.trim_start();
    v.starts_with("mongodb://") || v.starts_with("mongodb+srv://")
}

/// True when an env var's name says its value is a secret.
pub fn name_looks_secret(name: &str) -> bool {
    let u = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "PWD",
        "SECRET",
        "TOKEN",
        "PRIVATE_KEY",
        "API_KEY",
        "ACCESS_KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|k| u.contains(k))
        || u.ends_with("_PASS")
        || u == "PASS"
}

/// Where the parts of `scheme://user:password@rest` lie in `v`: (the prefix through `://`, the
/// user, the password, `@` and the rest); `None` without a password.
fn uri_userinfo(v: &str) -> Option<(&str, &str, &str, &str)> {
    let start = v.find("://")? + 3;
    let rest = &v[start..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let at = authority.rfind('@')?;
    let (user, password) = authority[..at].split_once(':')?;
    Some((&v[..start], user, password, &rest[at..]))
}

/// Masks the password of any `scheme://user:password@` in `v`; `None` if there was none.
pub fn mask_uri_password(v: &str) -> Option<String> {
    let (prefix, user, _, rest) = uri_userinfo(v)?;
    Some(format!("{prefix}{user}:{REDACTED}{rest}"))
}

/// True when `v` (a template) writes a password of its own into a URI, rather than the
/// `{password}` field.
pub fn has_literal_uri_password(v: &str) -> bool {
    uri_userinfo(v).is_some_and(|(_, _, pw, _)| !pw.is_empty() && pw.trim() != "{password}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atlas() -> MongoUri {
        MongoUri::parse(
            "--atlas-uri",
            "mongodb+srv://app:s3cr%2Ft@c0.ab.mongodb.net/shop?w=majority",
        )
        .unwrap()
    }

    #[test]
    fn detects_the_seed_style_and_single_uri_vars() {
        let t = |n: &str, v: Option<&str>| detect(n, v).map(|t| t.text().to_string());
        assert_eq!(
            t("MONGODB_USERNAME", Some("max")).as_deref(),
            Some("{user}")
        );
        assert_eq!(
            t("MONGODB_PASSWORD", Some("secret")).as_deref(),
            Some("{password}")
        );
        assert_eq!(
            t("MONGODB_URL", Some("localhost")).as_deref(),
            Some("{host}")
        );
        assert_eq!(t("MONGODB_NAME", Some("goals")).as_deref(), Some("{db}"));
        assert_eq!(
            t("MONGO_URI", Some("mongodb://localhost:27017/x")).as_deref(),
            Some("{uri}")
        );
        assert_eq!(t("MONGODB_URI", None).as_deref(), Some("{uri}"));
        assert_eq!(
            t("MONGO_URL", Some("mongodb://mongodb:27017")).as_deref(),
            Some("{uri}")
        );
        assert_eq!(
            t("DATABASE_URL", Some("mongodb://localhost/app")).as_deref(),
            Some("{uri}")
        );
        assert_eq!(
            t("MONGO_HOST", Some("localhost")).as_deref(),
            Some("{host}")
        );
        assert_eq!(t("MONGO_INITDB_ROOT_PASSWORD", Some("x")), None);
        assert_eq!(t("MONGO_INITDB_ROOT_USERNAME", Some("x")), None);
        assert_eq!(t("NODE_ENV", Some("production")), None);
        assert_eq!(t("DATABASE_URL", Some("postgres://x")), None);
    }

    #[test]
    fn renders_fields_and_masks_for_display() {
        let a = atlas();
        let t = Template::parse("mongodb+srv://{user}:{password}@{host}/{db}?retryWrites=true")
            .unwrap();
        assert_eq!(
            t.render(&a, Some("shop")).unwrap().expose(),
            "mongodb+srv://app:s3cr%2Ft@c0.ab.mongodb.net/shop?retryWrites=true",
            "inside a URI the password is percent-encoded"
        );
        assert_eq!(
            Template::field(Field::Password)
                .render(&a, None)
                .unwrap()
                .expose(),
            "s3cr/t",
            "a bare password var gets the password itself"
        );
        let shown = t.render_shown(&a, Some("shop")).unwrap();
        assert_eq!(
            shown,
            "mongodb+srv://app:****@c0.ab.mongodb.net/shop?retryWrites=true"
        );
        assert!(t.is_sensitive(&a));
        assert!(!Template::field(Field::Host).is_sensitive(&a));
        assert!(Template::field(Field::Uri).is_sensitive(&a));
        assert!(
            !Template::field(Field::Uri)
                .render_shown(&a, None)
                .unwrap()
                .contains("s3cr")
        );
        assert_eq!(
            Template::parse("{{literal}}")
                .unwrap()
                .render(&a, None)
                .unwrap()
                .expose(),
            "{literal}"
        );
    }

    #[test]
    fn a_password_with_every_reserved_character_survives_a_uri_template() {
        let pw = "p@ss:w/rd?#[x]%41 é";
        let atlas = MongoUri::parse(
            "--atlas-uri",
            &format!(
                "mongodb+srv://app:{}@c0.ab.mongodb.net/shop",
                crate::uri::percent_encode(pw)
            ),
        )
        .unwrap();
        let t = Template::parse("mongodb+srv://{user}:{password}@{host}/{db}").unwrap();
        let rendered = t.render(&atlas, Some("shop")).unwrap();
        // What the app is given parses back (by the driver's own parser) to the same password.
        let back = MongoUri::parse("app", rendered.expose()).unwrap();
        assert_eq!(back.password.unwrap().expose(), pw);
        assert_eq!(back.user.as_deref(), Some("app"));
        assert_eq!(back.db.as_deref(), Some("shop"));
    }

    /// True when a bare password would break an app that interpolates it into a URI.
    #[test]
    fn reserved_characters_are_told_apart() {
        assert!(has_uri_reserved("a@b"));
        assert!(has_uri_reserved("50%"));
        assert!(!has_uri_reserved("Plain-Passw0rd_~."));
    }

    #[test]
    fn bad_templates_and_flags_say_what_is_wrong() {
        let e = Template::parse("{pasword}").unwrap_err().to_string();
        assert!(
            e.contains("unknown field {pasword}") && e.contains("{password}"),
            "{e}"
        );
        assert!(
            Template::parse("{user")
                .unwrap_err()
                .to_string()
                .contains("without a closing")
        );
        assert!(
            Template::parse("user}")
                .unwrap_err()
                .to_string()
                .contains("without an opening")
        );
        assert!(
            EnvOverride::parse("NOVALUE")
                .unwrap_err()
                .to_string()
                .contains("NAME=TEMPLATE")
        );
        assert!(
            EnvOverride::parse("1X={uri}")
                .unwrap_err()
                .to_string()
                .contains("env var name")
        );
        let o = EnvOverride::parse("DB_CONN={uri}").unwrap();
        assert_eq!(o.name, "DB_CONN");
        let no_db = MongoUri::parse("x", "mongodb+srv://u:p@h.net").unwrap();
        let e = Template::field(Field::Db)
            .render(&no_db, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("add /DBNAME"), "{e}");
        let no_user = MongoUri::parse("x", "mongodb+srv://h.net/db").unwrap();
        assert!(
            Template::field(Field::Password)
                .render(&no_user, None)
                .is_err()
        );
    }

    #[test]
    fn masks_passwords_in_uris_and_knows_secret_names() {
        assert_eq!(
            mask_uri_password("mongodb://root:example@localhost:27017/admin").as_deref(),
            Some("mongodb://root:****@localhost:27017/admin")
        );
        assert_eq!(mask_uri_password("mongodb://localhost:27017/admin"), None);
        assert!(has_literal_uri_password("U=mongodb://root:example@h/x"));
        assert!(!has_literal_uri_password(
            "U=mongodb+srv://{user}:{password}@{host}/{db}"
        ));
        assert!(!has_literal_uri_password("U={uri}"));
        assert_eq!(mask_uri_password("https://user@host/x"), None);
        assert!(name_looks_secret("MONGODB_PASSWORD"));
        assert!(name_looks_secret("STRIPE_API_KEY"));
        assert!(!name_looks_secret("MONGODB_URL"));
    }
}
