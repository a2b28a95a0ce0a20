//! mycelium-config
