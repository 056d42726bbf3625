//! The engine's one error type. Each adapter maps it to its protocol's reply
//! codes in a single place (its own `error.rs`).

/// What can go wrong in an engine call.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A named object does not exist (AMQP 404, HTTP 404).
    #[error("no {kind} '{name}'")]
    NotFound {
        /// "queue", "exchange", "tenant", "group", "user", …
        kind: &'static str,
        /// The name that was looked up.
        name: String,
    },
    /// An object exists already with other properties, or an operation's
    /// precondition does not hold (AMQP 406, HTTP 409).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The object is owned by another connection (AMQP 405).
    #[error("{0}")]
    ResourceLocked(String),
    /// An argument is out of its domain (AMQP 406 or 402, HTTP 400).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The argument's name as the caller knows it.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The user may not do this (AMQP 403, HTTP 403).
    #[error("access refused: {0}")]
    AccessRefused(String),
    /// Wrong user name or password, or a user limited to loopback connecting from elsewhere.
    #[error("authentication failed for user '{0}'")]
    AuthenticationFailed(String),
    /// An ack, nack or reject names a delivery that is not in flight (already
    /// settled, timed out and handed to someone else, or never existed).
    #[error("unknown delivery {0}")]
    UnknownDelivery(String),
    /// The consumer was cancelled by the engine (its queue was deleted).
    #[error("consumer cancelled: {0}")]
    ConsumerCancelled(String),
    /// A configured limit refused the operation.
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The store failed or cannot write now.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// The engine is closing.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Failures of the embedded store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage backend reported an error.
    #[error("{context}: {source}")]
    Backend {
        /// What the engine was doing.
        context: String,
        /// The backend's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another process holds the data directory.
    #[error("data directory {0} is locked by another running gateway")]
    Locked(String),
    /// The data directory was written by an incompatible version.
    #[error("data directory {dir} has store format '{found}', this gateway reads '{expected}'")]
    Format {
        /// The data directory.
        dir: String,
        /// The format found on disk.
        found: String,
        /// The format this build reads and writes.
        expected: &'static str,
    },
    /// The data directory's encryption does not match the configured keys.
    #[error("{0}")]
    Encryption(String),
    /// A record could not be decoded.
    #[error("corrupt record in {keyspace}: {reason}")]
    Corrupt {
        /// Keyspace holding the record.
        keyspace: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The store cannot write now (a write or sync failed: a full disk, no
    /// file descriptors, …); it keeps trying and writes resume once it can.
    #[error("the store cannot write now ({0}); writes resume once it can")]
    NotWritable(String),
    /// File-system error outside the backend's own (creating the directory, …).
    #[error("{context}: {source}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// An error for states that should not happen (a panicked helper thread).
    pub fn invalid_state(reason: impl Into<String>) -> Self {
        Error::PreconditionFailed(reason.into())
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
