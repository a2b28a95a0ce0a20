//! The one place where errors become what a client sees: a SQLSTATE and a message that is safe
//! to show (no internals, no parameter values).

use mycelium_protocol::DbError;
use mycelium_router::RouterError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A statement failed on a node, or the proxy refused it with a SQLSTATE of its own.
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The client broke the protocol; the connection ends after the error is sent.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The client went away or the socket failed; nothing can be sent.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

/// What goes into an ErrorResponse.
pub struct ClientError {
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ProxyError {
    pub fn to_client(&self) -> ClientError {
        match self {
            ProxyError::Db(e) => ClientError {
                code: e.code.clone(),
                message: e.message.clone(),
                detail: e.detail.clone(),
                hint: e.hint.clone(),
            },
            ProxyError::Router(RouterError::Syntax(message)) => ClientError {
                code: "42601".to_owned(),
                message: message.clone(),
                detail: None,
                hint: None,
            },
            ProxyError::Router(RouterError::Unsupported(message)) => ClientError {
                code: "0A000".to_owned(),
                message: message.clone(),
                detail: None,
                hint: None,
            },
            ProxyError::Router(RouterError::InvalidParameter(message)) => ClientError {
                code: "22023".to_owned(),
                message: message.clone(),
                detail: None,
                hint: None,
            },
            ProxyError::Protocol(message) => ClientError {
                code: "08P01".to_owned(),
                message: message.clone(),
                detail: None,
                hint: None,
            },
            ProxyError::Io(e) => ClientError {
                code: "08006".to_owned(),
                message: format!("connection failure: {e}"),
                detail: None,
                hint: None,
            },
        }
    }

    /// Whether the session must end after reporting this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProxyError::Protocol(_) | ProxyError::Io(_))
    }
}

/// Shorthand for a [`ProxyError::Db`] with a SQLSTATE the proxy chose.
pub fn sql_error(code: &str, message: impl Into<String>) -> ProxyError {
    ProxyError::Db(DbError::new(code, message))
}
