//! Integration tests of mycelium-network over real loopback sockets. One binary, several
//! modules, so the crate is linked once.

mod connection;
mod framing;
mod handshake;
mod pool;
mod support;
mod tls;
mod unix_socket;
