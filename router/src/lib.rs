//! mycelium-router
