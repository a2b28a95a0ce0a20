//! mycelium-storage
