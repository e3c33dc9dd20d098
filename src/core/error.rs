//! The one error type of the core. Each variant maps to one documented JS error `code`.

use crate::core::fsm::{Event, State};

/// Why an operation failed, in the vocabulary of the public API.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An option or argument is outside its domain; the message names it and the rule.
    #[error("{0}")]
    InvalidOption(String),
    /// The FSM does not allow `event` from `from`.
    #[error("illegal transition: {event} is not allowed from state '{from}'")]
    IllegalTransition { from: State, event: Event },
    /// Redis answered with an error or the connection failed. The text never holds a secret.
    #[error("{0}")]
    Redis(String),
    /// A connect or a command exceeded its timeout.
    #[error("{0}")]
    Timeout(String),
    /// The network was closed.
    #[error("the network is closed")]
    Closed,
    /// The request contradicts what Redis holds now (e.g. forgetting a live instance).
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    /// The stable `code` string the JS error carries.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidOption(_) => "ERR_PERSEUS_INVALID_OPTION",
            Error::IllegalTransition { .. } => "ERR_PERSEUS_ILLEGAL_TRANSITION",
            Error::Redis(_) => "ERR_PERSEUS_REDIS",
            Error::Timeout(_) => "ERR_PERSEUS_TIMEOUT",
            Error::Closed => "ERR_PERSEUS_CLOSED",
            Error::Conflict(_) => "ERR_PERSEUS_CONFLICT",
        }
    }

    /// Shorthand for an invalid option or argument.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidOption(msg.into())
    }
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
