//! wip
pub mod clock;
pub mod fanout;
pub mod model;
pub mod store;
