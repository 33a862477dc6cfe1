//! Integration tests of the plugin host: one binary, a module per concern.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

mod budget;
mod c_plugins;
mod cache;
mod compile_bombs;
mod examples;
mod hostile;
mod logs;
mod stack;
mod support;
mod tie_breakers;
