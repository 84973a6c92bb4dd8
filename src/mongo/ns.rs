//! Namespaces (`db.collection`) and the `--db`, `--ns-include`, `--ns-exclude`, `--target-db`
//! selection rules.

use crate::error::{Error, Result};

/// A `db.collection` pair. Database names cannot contain `.`; collection names can.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace {
    /// Database.
    pub db: String,
    /// Collection (may contain dots, e.g. `events.2024`).
    pub coll: String,
}

impl Namespace {
    /// Builds one.
    pub fn new(db: impl Into<String>, coll: impl Into<String>) -> Self {
        Namespace {
            db: db.into(),
            coll: coll.into(),
        }
    }

    /// Splits `db.coll` at the first dot.
    pub fn parse(s: &str) -> Option<Namespace> {
        let (db, coll) = s.split_once('.')?;
        (!db.is_empty() && !coll.is_empty()).then(|| Namespace::new(db, coll))
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.db, self.coll)
    }
}

/// A `db.coll` pattern where `*` matches any run of characters (dots included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Parses a pattern; it must have the `db.coll` form.
    pub fn parse(flag: &str, s: &str) -> Result<Pattern> {
        if !s.contains('.') || s.starts_with('.') || s.ends_with('.') {
            return Err(Error::usage(format!(
                "{flag} '{s}' must have the form DB.COLLECTION (with * wildcards), e.g. 'shop.*' or '*.users'"
            )));
        }
        Ok(Pattern(s.to_string()))
    }

    /// True when the pattern matches `ns`.
    pub fn matches(&self, ns: &Namespace) -> bool {
        glob(self.0.as_bytes(), ns.to_string().as_bytes())
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard match with backtracking to the last '*'.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Which namespaces take part, and where they go.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `--db` (empty: every user database).
    pub dbs: Vec<String>,
    /// `--ns-include` (empty: everything).
    pub include: Vec<Pattern>,
    /// `--ns-exclude`.
    pub exclude: Vec<Pattern>,
    /// `--target-db`: rename the one selected database.
    pub target_db: Option<String>,
}

impl Selection {
    /// True when the database may hold selected collections.
    pub fn wants_db(&self, db: &str) -> bool {
        !crate::mongo::SYSTEM_DATABASES.contains(&db)
            && (self.dbs.is_empty() || self.dbs.iter().any(|d| d == db))
    }

    /// True when the namespace is selected.
    pub fn wants(&self, ns: &Namespace) -> bool {
        self.wants_db(&ns.db)
            && !ns.coll.starts_with("system.")
            && (self.include.is_empty() || self.include.iter().any(|p| p.matches(ns)))
            && !self.exclude.iter().any(|p| p.matches(ns))
    }

    /// Where a source namespace lands on the target.
    pub fn target_of(&self, ns: &Namespace) -> Namespace {
        match &self.target_db {
            Some(t) => Namespace::new(t.clone(), ns.coll.clone()),
            None => ns.clone(),
        }
    }

    /// Checks `--target-db` against the databases actually selected.
    pub fn check_target_db(&self, selected_dbs: &[String]) -> Result<()> {
        if let Some(t) = &self.target_db {
            if selected_dbs.len() != 1 {
                return Err(Error::usage(format!(
                    "--target-db {t} renames one database, but {} are selected ({}); pick one with --db NAME",
                    selected_dbs.len(),
                    selected_dbs.join(", ")
                )));
            }
            validate_db_name("--target-db", t)?;
        }
        Ok(())
    }
}

/// Rejects names MongoDB does not accept as database names.
pub fn validate_db_name(flag: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || name.contains([
            '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
        ])
    {
        return Err(Error::usage(format!(
            "{flag} '{name}' is not a valid database name (1-63 characters, none of / \\ . space \" $ * < > : | ?)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        Namespace::parse(s).unwrap()
    }

    #[test]
    fn namespaces_split_at_the_first_dot() {
        assert_eq!(
            ns("shop.events.2024"),
            Namespace::new("shop", "events.2024")
        );
        assert_eq!(ns("app.ünïcødé-coll").coll, "ünïcødé-coll");
        assert!(Namespace::parse("nodot").is_none());
        assert!(Namespace::parse(".x").is_none());
    }

    #[test]
    fn patterns_match_with_wildcards_across_dots() {
        let p = |s: &str| Pattern::parse("--ns-include", s).unwrap();
        assert!(p("shop.*").matches(&ns("shop.orders")));
        assert!(p("shop.*").matches(&ns("shop.events.2024")));
        assert!(!p("shop.*").matches(&ns("shopping.orders")));
        assert!(p("*.users").matches(&ns("a.users")));
        assert!(!p("*.users").matches(&ns("a.users_old")));
        assert!(p("shop.events.*").matches(&ns("shop.events.2024")));
        assert!(p("*.*-archive").matches(&ns("db.logs-archive")));
        assert!(p("a.b").matches(&ns("a.b")) && !p("a.b").matches(&ns("a.bc")));
        assert!(p("*.*").matches(&ns("x.y")));
        assert!(p("app.ü*").matches(&ns("app.ünïcødé")));
        assert!(Pattern::parse("--ns-include", "shop").is_err());
    }

    #[test]
    fn selection_rules() {
        let sel = Selection {
            dbs: vec![],
            include: vec![
                Pattern::parse("x", "shop.*").unwrap(),
                Pattern::parse("x", "crm.users").unwrap(),
            ],
            exclude: vec![Pattern::parse("x", "shop.tmp*").unwrap()],
            target_db: None,
        };
        assert!(sel.wants(&ns("shop.orders")));
        assert!(!sel.wants(&ns("shop.tmp_1")));
        assert!(sel.wants(&ns("crm.users")));
        assert!(!sel.wants(&ns("crm.leads")));
        assert!(!sel.wants(&ns("admin.users")));
        assert!(!sel.wants(&ns("shop.system.views")));
        let sel = Selection {
            dbs: vec!["crm".into()],
            target_db: Some("crm2".into()),
            ..Default::default()
        };
        assert!(!sel.wants(&ns("shop.orders")));
        assert_eq!(sel.target_of(&ns("crm.users")), ns("crm2.users"));
        assert!(sel.check_target_db(&["crm".into()]).is_ok());
        assert!(
            sel.check_target_db(&["crm".into(), "shop".into()])
                .unwrap_err()
                .to_string()
                .contains("pick one with --db")
        );
        let bad = Selection {
            target_db: Some("a.b".into()),
            ..Default::default()
        };
        assert!(bad.check_target_db(&["x".into()]).is_err());
    }
}
