//! mycelium-node
