//! Errors, one type per layer: [`FenceError`] (the fence and its tokens), [`LogError`] (the
//! write-ahead log), [`TransportError`] (TCP and TLS), and [`NodeError`] (the node, wrapping
//! the others). Each has a `kind()`: one flat [`ErrorKind`] to `match` on, whatever the layer. A value out of its
//! range is an [`OutOfRange`], whose bound comes from `limits.rs`.

mod fence;
mod forked;
mod kind;
mod log;
mod node;
mod out_of_range;
mod transport;

pub use fence::{FenceError, FenceFault};
pub use forked::Forked;
pub use kind::ErrorKind;
pub use log::LogError;
pub use node::NodeError;
pub use out_of_range::OutOfRange;
pub use transport::TransportError;
