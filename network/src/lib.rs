//! mycelium-network
