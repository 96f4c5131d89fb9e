//! The torture test's log format and its checker (the roles and the
//! supervisor live in ring_torture.rs).

pub mod checker;
pub mod log;
