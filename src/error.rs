//! The error type: every variant is a sentence a user can act on, and maps to an exit code.

use thiserror::Error;

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

/// Everything that can go wrong, phrased for the operator.
#[derive(Debug, Error)]
pub enum Error {
    /// A flag or value the user gave is wrong.
    #[error("{0}")]
    Usage(String),
    /// Something the user named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A safety guard said no.
    #[error("{0}")]
    Refused(String),
    /// An AWS call failed (after the SDK's retries).
    #[error("AWS {op} failed{}: {message}", resource_suffix(.resource))]
    Aws {
        /// The API operation, e.g. `ecs:DescribeServices`.
        op: String,
        /// The resource involved, if any.
        resource: Option<String>,
        /// A cleaned-up explanation, never a raw SDK dump.
        message: String,
    },
    /// A MongoDB operation failed.
    #[error("MongoDB {context}: {message}")]
    Mongo {
        /// What we were doing, naming the server (redacted) or namespace.
        context: String,
        /// The server's or driver's message, secrets scrubbed.
        message: String,
    },
    /// A MongoDB failure that may pass (dropped connection, failover, server selection);
    /// copy and verify retry these.
    #[error("MongoDB {context}: {message}")]
    MongoTransient {
        /// What we were doing.
        context: String,
        /// The driver's message, secrets scrubbed.
        message: String,
    },
    /// Verification found differences.
    #[error("{0}")]
    Mismatch(String),
    /// The run was interrupted.
    #[error("{0}")]
    Interrupted(String),
    /// The journal is missing, unreadable or belongs to something else.
    #[error("journal {path}: {message}")]
    Journal {
        /// The journal file.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A local I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

fn resource_suffix(r: &Option<String>) -> String {
    r.as_ref().map(|r| format!(" for {r}")).unwrap_or_default()
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::NotFound(_) => exit::USAGE,
            Error::Refused(_) => exit::REFUSED,
            Error::Mismatch(_) => exit::MISMATCH,
            Error::Interrupted(_) => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }

    /// True for failures worth retrying after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::MongoTransient { .. })
    }

    /// The same error (same exit code) with a sentence on what to do next appended.
    pub fn with_hint(self, hint: &str) -> Self {
        let add = |m: String| format!("{m}\n  {hint}");
        match self {
            Error::Usage(m) => Error::Usage(add(m)),
            Error::NotFound(m) => Error::NotFound(add(m)),
            Error::Refused(m) => Error::Refused(add(m)),
            Error::Mismatch(m) => Error::Mismatch(add(m)),
            Error::Interrupted(m) => Error::Interrupted(add(m)),
            Error::Other(m) => Error::Other(add(m)),
            Error::Aws {
                op,
                resource,
                message,
            } => Error::Aws {
                op,
                resource,
                message: add(message),
            },
            Error::Mongo { context, message } => Error::Mongo {
                context,
                message: add(message),
            },
            Error::MongoTransient { context, message } => Error::MongoTransient {
                context,
                message: add(message),
            },
            Error::Journal { path, message } => Error::Journal {
                path,
                message: add(message),
            },
            Error::Io { context, source } => Error::Io {
                context: format!("{context} ({hint})"),
                source,
            },
        }
    }

    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
