//! One module per group of user commands.

pub mod apps;
pub mod join;
pub mod lifecycle;
pub mod logs;
pub mod push;
pub mod up;
