//! Everything that crosses a process boundary, with its byte layout:
//!
//! - [`wire`]: the numbers the crate and its init program agree on (also
//!   compiled into `init/main.rs`);
//! - [`plan`]: the init program's setup steps, typed;
//! - [`reports`]: the init program's plan and report and a joining process's
//!   report, typed;
//! - [`frame`]: the framed result channel of a run (one frame, decoded as
//!   hostile input);
//! - [`bounded`]: decoding a frame's value within bounds of depth and
//!   length.
//!
//! The protocol uses only `error` and `sys`, so that both sides of every
//! boundary (the test process and the after-fork code in `child`) can.

pub(crate) mod bounded;
pub(crate) mod frame;
pub(crate) mod plan;
pub(crate) mod reports;
pub(crate) mod wire;
