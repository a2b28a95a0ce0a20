//! mycelium-proxy
