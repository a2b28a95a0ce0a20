mod codec;
mod convergence;
mod core;
mod machines;
mod mem;
