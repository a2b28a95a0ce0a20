//! The startup phase: SSL negotiation, the startup packet, cancel requests and authentication.

use std::collections::BTreeMap;

use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use pgwire::messages::PgWireFrontendMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Users, Verifier};
use crate::backend;
use crate::conn::{ClientConn, ClientStream};
use crate::error::ProxyError;

/// Postgres's own bound on a startup packet.
const MAX_STARTUP_PACKET: usize = 10_000;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3: i32 = 3;

/// What a new connection turned out to be.
pub enum Opening {
    /// A client that wants a session.
    Startup(StartupRequest),
    /// A CancelRequest for another session.
    Cancel { pid: i32, secret: i32 },
}

pub struct StartupRequest {
    pub stream: Box<dyn ClientStream>,
    pub params: BTreeMap<String, String>,
    pub is_tls: bool,
    /// `_pq_.` options we do not support, for NegotiateProtocolVersion.
    pub unsupported_minor: Option<(i32, Vec<String>)>,
}

impl StartupRequest {
    pub fn user(&self) -> &str {
        self.params.get("user").map(String::as_str).unwrap_or("")
    }
}

/// Reads packets until the startup message, upgrading to TLS when the client asks for it.
pub async fn open(tcp: TcpStream, tls: &TlsAcceptor) -> Result<Opening, ProxyError> {
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn ClientStream> = Box::new(tcp);
    let mut is_tls = false;
    loop {
        let packet = read_startup_packet(&mut stream).await?;
        let code = i32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        match code {
            SSL_REQUEST if !is_tls => {
                stream.write_all(b"S").await?;
                stream.flush().await?;
                let tls_stream = tls
                    .accept(stream)
                    .await
                    .map_err(|e| ProxyError::Protocol(format!("TLS handshake failed: {e}")))?;
                stream = Box::new(tls_stream);
                is_tls = true;
            }
            GSSENC_REQUEST if !is_tls => {
                stream.write_all(b"N").await?;
                stream.flush().await?;
            }
            CANCEL_REQUEST if packet.len() >= 12 => {
                let pid = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
                let secret = i32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
                return Ok(Opening::Cancel { pid, secret });
            }
            _ if code >> 16 == PROTOCOL_3 => {
                let minor = code & 0xffff;
                let params = parse_startup_params(&packet[4..])?;
                let unsupported: Vec<String> = params
                    .keys()
                    .filter(|k| k.starts_with("_pq_."))
                    .cloned()
                    .collect();
                let unsupported_minor =
                    (minor > 0 || !unsupported.is_empty()).then_some((0, unsupported));
                return Ok(Opening::Startup(StartupRequest {
                    stream,
                    params: params
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("_pq_."))
                        .collect(),
                    is_tls,
                    unsupported_minor,
                }));
            }
            _ => {
                let mut out = BytesMut::new();
                let message = format!(
                    "unsupported frontend protocol {}.{}: server supports 3.0",
                    code >> 16,
                    code & 0xffff
                );
                backend::fatal_response(&mut out, "0A000", &message);
                let _ = stream.write_all(&out).await;
                return Err(ProxyError::Protocol("unsupported protocol".to_owned()));
            }
        }
    }
}

async fn read_startup_packet(stream: &mut Box<dyn ClientStream>) -> Result<Vec<u8>, ProxyError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(ProxyError::Protocol(format!(
            "invalid startup packet length {len}"
        )));
    }
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

fn parse_startup_params(body: &[u8]) -> Result<BTreeMap<String, String>, ProxyError> {
    let mut params = BTreeMap::new();
    let mut fields = body.split(|&b| b == 0);
    while let Some(name) = fields.next() {
        if name.is_empty() {
            break;
        }
        let value = fields
            .next()
            .ok_or_else(|| ProxyError::Protocol("startup parameter without a value".to_owned()))?;
        let text = |bytes: &[u8]| {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ProxyError::Protocol("startup packet is not UTF-8".to_owned()))
        };
        params.insert(text(name)?, text(value)?);
    }
    if !params.contains_key("user") {
        return Err(ProxyError::Protocol(
            "no PostgreSQL user name specified in startup packet".to_owned(),
        ));
    }
    Ok(params)
}

/// Why authentication did not succeed.
pub enum AuthFailure {
    /// Wrong password or unknown user: 28P01, the same message either way.
    Rejected,
    /// The connection broke or the client sent something else than SASL messages.
    Error(ProxyError),
}

/// Runs SCRAM-SHA-256 with the client. Only the plain mechanism is offered: channel binding
/// (`-PLUS`) would break libpq clients on non-TLS connections (see NOTES-crates.md).
pub async fn authenticate(
    conn: &mut ClientConn,
    users: &Users,
    user: &str,
) -> Result<(), AuthFailure> {
    let known = users.verifier(user);
    let verifier = known.cloned().unwrap_or_else(Verifier::impossible);
    backend::authentication_sasl(&mut conn.out, &["SCRAM-SHA-256"]);
    let initial = next_password_message(conn)
        .await?
        .into_sasl_initial_response()
        .map_err(|e| AuthFailure::Error(ProxyError::Protocol(e.to_string())))?;
    if initial.auth_method != "SCRAM-SHA-256" {
        return Err(AuthFailure::Error(ProxyError::Protocol(format!(
            "unsupported SASL mechanism {}",
            initial.auth_method
        ))));
    }
    let data = initial.data.unwrap_or_default();
    let scram = ScramServerAuth::new();
    let (server_first, waiting) = scram
        .on_client_first_message_with_secret(&data, verifier.secret())
        .map_err(|_| AuthFailure::Rejected)?;
    backend::authentication_sasl_continue(&mut conn.out, server_first.as_bytes());
    let response = next_password_message(conn)
        .await?
        .into_sasl_response()
        .map_err(|e| AuthFailure::Error(ProxyError::Protocol(e.to_string())))?;
    let server_final = waiting
        .on_client_final_message(&response.data)
        .map_err(|_| AuthFailure::Rejected)?;
    if known.is_none() {
        return Err(AuthFailure::Rejected);
    }
    backend::authentication_sasl_final(&mut conn.out, server_final.as_bytes());
    backend::authentication_ok(&mut conn.out);
    Ok(())
}

async fn next_password_message(
    conn: &mut ClientConn,
) -> Result<pgwire::messages::startup::PasswordMessageFamily, AuthFailure> {
    match conn.read_message().await {
        Ok(Some(PgWireFrontendMessage::PasswordMessageFamily(message))) => Ok(message),
        Ok(Some(_)) => Err(AuthFailure::Error(ProxyError::Protocol(
            "expected a SASL response during authentication".to_owned(),
        ))),
        Ok(None) => Err(AuthFailure::Error(ProxyError::Protocol(
            "client closed the connection during authentication".to_owned(),
        ))),
        Err(e) => Err(AuthFailure::Error(e)),
    }
}
