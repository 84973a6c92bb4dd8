//! The error type: one shape for every failure — what kind it is (which decides the exit
//! code and whether a retry may help), one sentence a user can act on, and what to do next.

/// Exit codes (documented in the README).
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// Failed (AWS/Mongo error after retries).
    pub const FAILED: i32 = 1;
    /// Usage error: bad flag or value, or a named resource that does not exist.
    pub const USAGE: i32 = 2;
    /// Refused by a safety guard.
    pub const REFUSED: i32 = 3;
    /// Verification found differences.
    pub const MISMATCH: i32 = 4;
    /// Interrupted; `efs2atlas resume` continues.
    pub const INTERRUPTED: i32 = 5;
}

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A flag or value the user gave is wrong.
    Usage,
    /// Something the user named does not exist.
    NotFound,
    /// A safety guard said no.
    Refused,
    /// An AWS call failed (after the SDK's retries).
    Aws,
    /// An Atlas Administration API call failed.
    Atlas,
    /// A MongoDB operation failed.
    Mongo,
    /// A MongoDB failure that may pass (dropped connection, failover, server selection):
    /// the data steps retry these.
    MongoTransient,
    /// Verification found differences.
    Mismatch,
    /// The run was interrupted.
    Interrupted,
    /// The journal is missing, unreadable or belongs to something else.
    Journal,
    /// A local I/O failure.
    Io,
    /// Anything else, already phrased for the user.
    Other,
}

/// Everything that can go wrong, phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", hint_suffix(.hint))]
pub struct Error {
    /// What kind of failure.
    pub kind: Kind,
    /// What went wrong, naming the resource, server (redacted) or file.
    pub message: String,
    /// What to do next, when there is something to say.
    pub hint: Option<String>,
    /// The I/O error underneath, for `Io`.
    #[source]
    source: Option<std::io::Error>,
}

fn hint_suffix(h: &Option<String>) -> String {
    h.as_ref().map(|h| format!("\n  {h}")).unwrap_or_default()
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// A wrong flag or value.
    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(Kind::Usage, m)
    }

    /// Something named that does not exist.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, m)
    }

    /// A safety guard's refusal.
    pub fn refused(m: impl Into<String>) -> Self {
        Self::new(Kind::Refused, m)
    }

    /// Verification found differences.
    pub fn mismatch(m: impl Into<String>) -> Self {
        Self::new(Kind::Mismatch, m)
    }

    /// The run was interrupted.
    pub fn interrupted(m: impl Into<String>) -> Self {
        Self::new(Kind::Interrupted, m)
    }

    /// Anything else, already phrased for the user.
    pub fn other(m: impl Into<String>) -> Self {
        Self::new(Kind::Other, m)
    }

    /// An AWS call `op` (e.g. `ecs:DescribeServices`) failed, for `resource` if any.
    pub fn aws(
        op: impl Into<String>,
        resource: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let on = resource.map(|r| format!(" for {r}")).unwrap_or_default();
        Self::new(
            Kind::Aws,
            format!("AWS {} failed{on}: {}", op.into(), message.into()),
        )
    }

    /// A MongoDB operation failed while `context`.
    pub fn mongo(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            Kind::Mongo,
            format!("MongoDB {}: {}", context.into(), message.into()),
        )
    }

    /// A MongoDB failure that may pass, while `context`.
    pub fn mongo_transient(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            Kind::MongoTransient,
            format!("MongoDB {}: {}", context.into(), message.into()),
        )
    }

    /// The journal at `path` cannot be used, and why.
    pub fn journal(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            Kind::Journal,
            format!("journal {}: {}", path.into(), message.into()),
        )
    }

    /// A local I/O failure while `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let message = format!("{}: {source}", context.into());
        Error {
            source: Some(source),
            ..Self::new(Kind::Io, message)
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Usage | Kind::NotFound => exit::USAGE,
            Kind::Refused => exit::REFUSED,
            Kind::Mismatch => exit::MISMATCH,
            Kind::Interrupted => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }

    /// True for failures worth retrying after a pause.
    pub fn is_transient(&self) -> bool {
        self.kind == Kind::MongoTransient
    }

    /// True when the run was interrupted.
    pub fn is_interrupted(&self) -> bool {
        self.kind == Kind::Interrupted
    }

    /// The same error (same kind, same exit code) with what to do next; a second hint goes
    /// on a line of its own after the first.
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.hint = Some(match self.hint.take() {
            Some(h) => format!("{h}\n  {hint}"),
            None => hint.to_string(),
        });
        self
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shape_kind_message_hint() {
        let e = Error::refused("the target holds data").with_hint("pass --drop");
        assert_eq!(e.exit_code(), exit::REFUSED);
        assert_eq!(e.to_string(), "the target holds data\n  pass --drop");
        let e = Error::mongo("source: reading a.b", "connection reset");
        assert_eq!(
            e.to_string(),
            "MongoDB source: reading a.b: connection reset"
        );
        assert_eq!(e.exit_code(), exit::FAILED);
        let e = Error::aws("ecs:DescribeServices", Some("svc".into()), "denied");
        assert_eq!(
            e.to_string(),
            "AWS ecs:DescribeServices failed for svc: denied"
        );
        let e = Error::journal("j.json", "is not valid JSON");
        assert_eq!(e.to_string(), "journal j.json: is not valid JSON");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(Error::io("reading x", io).to_string(), "reading x: gone");
        assert!(Error::mongo_transient("a", "b").is_transient());
    }
}
